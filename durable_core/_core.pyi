# Type stub for the C extension durable_core._core. Each part adds its names here.
