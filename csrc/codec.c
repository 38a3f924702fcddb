/* durable_core._core: the binary history codec.
 *
 * The format, its checks and its error messages are specified in the docstring of
 * durable_core/_codec_py.py (the pure-Python twin); this file must produce the same bytes,
 * the same events and the same errors.
 *
 * Decoding builds the event NamedTuples directly (tp_alloc + PyTuple_SET_ITEM: they are
 * tuple subclasses with __slots__ = ()), so no Python code runs per event. Encoding reads the
 * fields with PyTuple_GET_ITEM after checking the exact class. The classes are handed over once
 * by durable_core.history through _codec_register() and kept in this part's state.
 */
#include "dc.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#define DC_NTYPES 19
#define MAX_FIELDS 12
#define MAX_RECORD_SIZE 0x7FFFFFFFu
#define MAX_FAILURE_DEPTH 32
#define ABSOLUTE_FLAG 0x80
#define TYPE_MASK 0x7F
#define HEADER_SIZE 4
static const uint8_t HEADER[HEADER_SIZE] = {'D', 'C', 'H', 1};

/* ------------------------------------------------------------------------------------------ */
/* schema                                                                                      */
/* ------------------------------------------------------------------------------------------ */

enum {
    K_INT, K_TS, K_TIME_REL, K_STR, K_OPT_STR, K_OPT_BYTES, K_BOOL, K_OPT_INT, K_TAGS,
    K_OPT_FAILURE
};

typedef struct {
    const char *name;
    int kind;
} field_spec;

typedef struct {
    const char *name;
    Py_ssize_t nfields;
    field_spec f[MAX_FIELDS];
    Py_ssize_t nbase; /* fields every record holds; the rest are trailing (0: no trailing) */
} class_spec;

/* Fields [0, base) of spec are always written; trailing ones may end the record early. */
static inline Py_ssize_t
spec_base(const class_spec *spec)
{
    return spec->nbase > 0 ? spec->nbase : spec->nfields;
}

#define EID {"event_id", K_INT}
#define TS {"timestamp", K_TS}

/* Indexed by EVENT_TYPE; must match _SCHEMA and _TRAILING in _codec_py.py (the fields are
 * checked at registration). Trailing fields (added later) come after nbase. */
static const class_spec event_specs[DC_NTYPES + 1] = {
    {NULL, 0, {{NULL, 0}}, 0},
    {"ExecutionStarted", 12,
     {EID, TS, {"name", K_STR}, {"instance_id", K_STR}, {"input", K_OPT_BYTES},
      {"version", K_OPT_STR}, {"parent_instance_id", K_OPT_STR}, {"parent_task_id", K_INT},
      {"scheduled_start_time", K_OPT_INT}, {"tags", K_TAGS}, {"execution_id", K_OPT_STR},
      {"trace_context", K_OPT_STR}},
     11},
    {"ExecutionCompleted", 5,
     {EID, TS, {"status", K_INT}, {"result", K_OPT_BYTES}, {"failure_details", K_OPT_FAILURE}}},
    {"ExecutionTerminated", 4, {EID, TS, {"input", K_OPT_BYTES}, {"recurse", K_BOOL}}},
    {"ExecutionSuspended", 3, {EID, TS, {"input", K_OPT_BYTES}}},
    {"ExecutionResumed", 3, {EID, TS, {"input", K_OPT_BYTES}}},
    {"ContinueAsNew", 3, {EID, TS, {"input", K_OPT_BYTES}}},
    {"OrchestratorStarted", 2, {EID, TS}},
    {"OrchestratorCompleted", 2, {EID, TS}},
    {"TaskScheduled", 4, {EID, TS, {"name", K_STR}, {"input", K_OPT_BYTES}}},
    {"TaskCompleted", 4, {EID, TS, {"task_scheduled_id", K_INT}, {"result", K_OPT_BYTES}}},
    {"TaskFailed", 4,
     {EID, TS, {"task_scheduled_id", K_INT}, {"failure_details", K_OPT_FAILURE}}},
    {"SubOrchestrationInstanceCreated", 6,
     {EID, TS, {"name", K_STR}, {"instance_id", K_STR}, {"input", K_OPT_BYTES},
      {"version", K_OPT_STR}},
     5},
    {"SubOrchestrationInstanceCompleted", 4,
     {EID, TS, {"task_scheduled_id", K_INT}, {"result", K_OPT_BYTES}}},
    {"SubOrchestrationInstanceFailed", 4,
     {EID, TS, {"task_scheduled_id", K_INT}, {"failure_details", K_OPT_FAILURE}}},
    {"TimerCreated", 3, {EID, TS, {"fire_at", K_TIME_REL}}},
    {"TimerFired", 4, {EID, TS, {"fire_at", K_TIME_REL}, {"timer_id", K_INT}}},
    {"EventRaised", 4, {EID, TS, {"name", K_STR}, {"input", K_OPT_BYTES}}},
    {"EventSent", 5,
     {EID, TS, {"instance_id", K_STR}, {"name", K_STR}, {"input", K_OPT_BYTES}}},
    {"PatchMarker", 3, {EID, TS, {"patch_id", K_STR}}},
};

static const class_spec failure_spec = {
    "FailureDetails", 5,
    {{"error_type", K_STR}, {"message", K_STR}, {"stack_trace", K_OPT_STR},
     {"inner_failure", K_OPT_FAILURE}, {"is_non_retriable", K_BOOL}},
};

#undef EID
#undef TS

/* Decoded short strings are shared through a small direct-mapped cache for the duration of
 * one decode call (activity names, instance ids and tag keys repeat a lot). */
#define STR_CACHE_SIZE 64
#define STR_CACHE_MAX_LEN 48

struct dc_codec_state {
    PyObject *classes[DC_NTYPES + 1]; /* [EVENT_TYPE] -> class; [0] unused */
    PyObject *failure_cls;
    PyObject *corrupt_err; /* durable_core.errors.HistoryCorruptError */
    int hw_crc;            /* the CPU computes CRC32C (set once, at exec) */
};

/* CRC32C (Castagnoli, reflected 0x82F63B78) slicing-by-8 tables: crc32c_table[k][b] is the
 * CRC of byte b followed by k zero bytes. Generated once; never modified. */
static const uint32_t crc32c_table[8][256] = {
    {
        0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu,
        0x26a1e7e8u, 0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
        0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu,
        0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
        0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu,
        0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
        0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
        0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
        0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu,
        0x1642ae59u, 0xe4292d5au, 0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
        0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu,
        0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
        0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu,
        0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
        0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu,
        0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
        0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu,
        0x4767748au, 0xb50cf789u, 0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
        0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u, 0x7198540du, 0x83f3d70eu,
        0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
        0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
        0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
        0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u,
        0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
        0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu,
        0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
        0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u, 0x502036a5u,
        0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
        0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u,
        0x0e330a81u, 0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
        0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u,
        0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
        0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u,
        0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
        0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
        0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
        0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u,
        0x7fab5e8cu, 0x8dc0dd8fu, 0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
        0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u,
        0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
        0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u,
        0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
        0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
    },
    {
        0x00000000u, 0x13a29877u, 0x274530eeu, 0x34e7a899u, 0x4e8a61dcu, 0x5d28f9abu,
        0x69cf5132u, 0x7a6dc945u, 0x9d14c3b8u, 0x8eb65bcfu, 0xba51f356u, 0xa9f36b21u,
        0xd39ea264u, 0xc03c3a13u, 0xf4db928au, 0xe7790afdu, 0x3fc5f181u, 0x2c6769f6u,
        0x1880c16fu, 0x0b225918u, 0x714f905du, 0x62ed082au, 0x560aa0b3u, 0x45a838c4u,
        0xa2d13239u, 0xb173aa4eu, 0x859402d7u, 0x96369aa0u, 0xec5b53e5u, 0xfff9cb92u,
        0xcb1e630bu, 0xd8bcfb7cu, 0x7f8be302u, 0x6c297b75u, 0x58ced3ecu, 0x4b6c4b9bu,
        0x310182deu, 0x22a31aa9u, 0x1644b230u, 0x05e62a47u, 0xe29f20bau, 0xf13db8cdu,
        0xc5da1054u, 0xd6788823u, 0xac154166u, 0xbfb7d911u, 0x8b507188u, 0x98f2e9ffu,
        0x404e1283u, 0x53ec8af4u, 0x670b226du, 0x74a9ba1au, 0x0ec4735fu, 0x1d66eb28u,
        0x298143b1u, 0x3a23dbc6u, 0xdd5ad13bu, 0xcef8494cu, 0xfa1fe1d5u, 0xe9bd79a2u,
        0x93d0b0e7u, 0x80722890u, 0xb4958009u, 0xa737187eu, 0xff17c604u, 0xecb55e73u,
        0xd852f6eau, 0xcbf06e9du, 0xb19da7d8u, 0xa23f3fafu, 0x96d89736u, 0x857a0f41u,
        0x620305bcu, 0x71a19dcbu, 0x45463552u, 0x56e4ad25u, 0x2c896460u, 0x3f2bfc17u,
        0x0bcc548eu, 0x186eccf9u, 0xc0d23785u, 0xd370aff2u, 0xe797076bu, 0xf4359f1cu,
        0x8e585659u, 0x9dface2eu, 0xa91d66b7u, 0xbabffec0u, 0x5dc6f43du, 0x4e646c4au,
        0x7a83c4d3u, 0x69215ca4u, 0x134c95e1u, 0x00ee0d96u, 0x3409a50fu, 0x27ab3d78u,
        0x809c2506u, 0x933ebd71u, 0xa7d915e8u, 0xb47b8d9fu, 0xce1644dau, 0xddb4dcadu,
        0xe9537434u, 0xfaf1ec43u, 0x1d88e6beu, 0x0e2a7ec9u, 0x3acdd650u, 0x296f4e27u,
        0x53028762u, 0x40a01f15u, 0x7447b78cu, 0x67e52ffbu, 0xbf59d487u, 0xacfb4cf0u,
        0x981ce469u, 0x8bbe7c1eu, 0xf1d3b55bu, 0xe2712d2cu, 0xd69685b5u, 0xc5341dc2u,
        0x224d173fu, 0x31ef8f48u, 0x050827d1u, 0x16aabfa6u, 0x6cc776e3u, 0x7f65ee94u,
        0x4b82460du, 0x5820de7au, 0xfbc3faf9u, 0xe861628eu, 0xdc86ca17u, 0xcf245260u,
        0xb5499b25u, 0xa6eb0352u, 0x920cabcbu, 0x81ae33bcu, 0x66d73941u, 0x7575a136u,
        0x419209afu, 0x523091d8u, 0x285d589du, 0x3bffc0eau, 0x0f186873u, 0x1cbaf004u,
        0xc4060b78u, 0xd7a4930fu, 0xe3433b96u, 0xf0e1a3e1u, 0x8a8c6aa4u, 0x992ef2d3u,
        0xadc95a4au, 0xbe6bc23du, 0x5912c8c0u, 0x4ab050b7u, 0x7e57f82eu, 0x6df56059u,
        0x1798a91cu, 0x043a316bu, 0x30dd99f2u, 0x237f0185u, 0x844819fbu, 0x97ea818cu,
        0xa30d2915u, 0xb0afb162u, 0xcac27827u, 0xd960e050u, 0xed8748c9u, 0xfe25d0beu,
        0x195cda43u, 0x0afe4234u, 0x3e19eaadu, 0x2dbb72dau, 0x57d6bb9fu, 0x447423e8u,
        0x70938b71u, 0x63311306u, 0xbb8de87au, 0xa82f700du, 0x9cc8d894u, 0x8f6a40e3u,
        0xf50789a6u, 0xe6a511d1u, 0xd242b948u, 0xc1e0213fu, 0x26992bc2u, 0x353bb3b5u,
        0x01dc1b2cu, 0x127e835bu, 0x68134a1eu, 0x7bb1d269u, 0x4f567af0u, 0x5cf4e287u,
        0x04d43cfdu, 0x1776a48au, 0x23910c13u, 0x30339464u, 0x4a5e5d21u, 0x59fcc556u,
        0x6d1b6dcfu, 0x7eb9f5b8u, 0x99c0ff45u, 0x8a626732u, 0xbe85cfabu, 0xad2757dcu,
        0xd74a9e99u, 0xc4e806eeu, 0xf00fae77u, 0xe3ad3600u, 0x3b11cd7cu, 0x28b3550bu,
        0x1c54fd92u, 0x0ff665e5u, 0x759baca0u, 0x663934d7u, 0x52de9c4eu, 0x417c0439u,
        0xa6050ec4u, 0xb5a796b3u, 0x81403e2au, 0x92e2a65du, 0xe88f6f18u, 0xfb2df76fu,
        0xcfca5ff6u, 0xdc68c781u, 0x7b5fdfffu, 0x68fd4788u, 0x5c1aef11u, 0x4fb87766u,
        0x35d5be23u, 0x26772654u, 0x12908ecdu, 0x013216bau, 0xe64b1c47u, 0xf5e98430u,
        0xc10e2ca9u, 0xd2acb4deu, 0xa8c17d9bu, 0xbb63e5ecu, 0x8f844d75u, 0x9c26d502u,
        0x449a2e7eu, 0x5738b609u, 0x63df1e90u, 0x707d86e7u, 0x0a104fa2u, 0x19b2d7d5u,
        0x2d557f4cu, 0x3ef7e73bu, 0xd98eedc6u, 0xca2c75b1u, 0xfecbdd28u, 0xed69455fu,
        0x97048c1au, 0x84a6146du, 0xb041bcf4u, 0xa3e32483u,
    },
    {
        0x00000000u, 0xa541927eu, 0x4f6f520du, 0xea2ec073u, 0x9edea41au, 0x3b9f3664u,
        0xd1b1f617u, 0x74f06469u, 0x38513ec5u, 0x9d10acbbu, 0x773e6cc8u, 0xd27ffeb6u,
        0xa68f9adfu, 0x03ce08a1u, 0xe9e0c8d2u, 0x4ca15aacu, 0x70a27d8au, 0xd5e3eff4u,
        0x3fcd2f87u, 0x9a8cbdf9u, 0xee7cd990u, 0x4b3d4beeu, 0xa1138b9du, 0x045219e3u,
        0x48f3434fu, 0xedb2d131u, 0x079c1142u, 0xa2dd833cu, 0xd62de755u, 0x736c752bu,
        0x9942b558u, 0x3c032726u, 0xe144fb14u, 0x4405696au, 0xae2ba919u, 0x0b6a3b67u,
        0x7f9a5f0eu, 0xdadbcd70u, 0x30f50d03u, 0x95b49f7du, 0xd915c5d1u, 0x7c5457afu,
        0x967a97dcu, 0x333b05a2u, 0x47cb61cbu, 0xe28af3b5u, 0x08a433c6u, 0xade5a1b8u,
        0x91e6869eu, 0x34a714e0u, 0xde89d493u, 0x7bc846edu, 0x0f382284u, 0xaa79b0fau,
        0x40577089u, 0xe516e2f7u, 0xa9b7b85bu, 0x0cf62a25u, 0xe6d8ea56u, 0x43997828u,
        0x37691c41u, 0x92288e3fu, 0x78064e4cu, 0xdd47dc32u, 0xc76580d9u, 0x622412a7u,
        0x880ad2d4u, 0x2d4b40aau, 0x59bb24c3u, 0xfcfab6bdu, 0x16d476ceu, 0xb395e4b0u,
        0xff34be1cu, 0x5a752c62u, 0xb05bec11u, 0x151a7e6fu, 0x61ea1a06u, 0xc4ab8878u,
        0x2e85480bu, 0x8bc4da75u, 0xb7c7fd53u, 0x12866f2du, 0xf8a8af5eu, 0x5de93d20u,
        0x29195949u, 0x8c58cb37u, 0x66760b44u, 0xc337993au, 0x8f96c396u, 0x2ad751e8u,
        0xc0f9919bu, 0x65b803e5u, 0x1148678cu, 0xb409f5f2u, 0x5e273581u, 0xfb66a7ffu,
        0x26217bcdu, 0x8360e9b3u, 0x694e29c0u, 0xcc0fbbbeu, 0xb8ffdfd7u, 0x1dbe4da9u,
        0xf7908ddau, 0x52d11fa4u, 0x1e704508u, 0xbb31d776u, 0x511f1705u, 0xf45e857bu,
        0x80aee112u, 0x25ef736cu, 0xcfc1b31fu, 0x6a802161u, 0x56830647u, 0xf3c29439u,
        0x19ec544au, 0xbcadc634u, 0xc85da25du, 0x6d1c3023u, 0x8732f050u, 0x2273622eu,
        0x6ed23882u, 0xcb93aafcu, 0x21bd6a8fu, 0x84fcf8f1u, 0xf00c9c98u, 0x554d0ee6u,
        0xbf63ce95u, 0x1a225cebu, 0x8b277743u, 0x2e66e53du, 0xc448254eu, 0x6109b730u,
        0x15f9d359u, 0xb0b84127u, 0x5a968154u, 0xffd7132au, 0xb3764986u, 0x1637dbf8u,
        0xfc191b8bu, 0x595889f5u, 0x2da8ed9cu, 0x88e97fe2u, 0x62c7bf91u, 0xc7862defu,
        0xfb850ac9u, 0x5ec498b7u, 0xb4ea58c4u, 0x11abcabau, 0x655baed3u, 0xc01a3cadu,
        0x2a34fcdeu, 0x8f756ea0u, 0xc3d4340cu, 0x6695a672u, 0x8cbb6601u, 0x29faf47fu,
        0x5d0a9016u, 0xf84b0268u, 0x1265c21bu, 0xb7245065u, 0x6a638c57u, 0xcf221e29u,
        0x250cde5au, 0x804d4c24u, 0xf4bd284du, 0x51fcba33u, 0xbbd27a40u, 0x1e93e83eu,
        0x5232b292u, 0xf77320ecu, 0x1d5de09fu, 0xb81c72e1u, 0xccec1688u, 0x69ad84f6u,
        0x83834485u, 0x26c2d6fbu, 0x1ac1f1ddu, 0xbf8063a3u, 0x55aea3d0u, 0xf0ef31aeu,
        0x841f55c7u, 0x215ec7b9u, 0xcb7007cau, 0x6e3195b4u, 0x2290cf18u, 0x87d15d66u,
        0x6dff9d15u, 0xc8be0f6bu, 0xbc4e6b02u, 0x190ff97cu, 0xf321390fu, 0x5660ab71u,
        0x4c42f79au, 0xe90365e4u, 0x032da597u, 0xa66c37e9u, 0xd29c5380u, 0x77ddc1feu,
        0x9df3018du, 0x38b293f3u, 0x7413c95fu, 0xd1525b21u, 0x3b7c9b52u, 0x9e3d092cu,
        0xeacd6d45u, 0x4f8cff3bu, 0xa5a23f48u, 0x00e3ad36u, 0x3ce08a10u, 0x99a1186eu,
        0x738fd81du, 0xd6ce4a63u, 0xa23e2e0au, 0x077fbc74u, 0xed517c07u, 0x4810ee79u,
        0x04b1b4d5u, 0xa1f026abu, 0x4bdee6d8u, 0xee9f74a6u, 0x9a6f10cfu, 0x3f2e82b1u,
        0xd50042c2u, 0x7041d0bcu, 0xad060c8eu, 0x08479ef0u, 0xe2695e83u, 0x4728ccfdu,
        0x33d8a894u, 0x96993aeau, 0x7cb7fa99u, 0xd9f668e7u, 0x9557324bu, 0x3016a035u,
        0xda386046u, 0x7f79f238u, 0x0b899651u, 0xaec8042fu, 0x44e6c45cu, 0xe1a75622u,
        0xdda47104u, 0x78e5e37au, 0x92cb2309u, 0x378ab177u, 0x437ad51eu, 0xe63b4760u,
        0x0c158713u, 0xa954156du, 0xe5f54fc1u, 0x40b4ddbfu, 0xaa9a1dccu, 0x0fdb8fb2u,
        0x7b2bebdbu, 0xde6a79a5u, 0x3444b9d6u, 0x91052ba8u,
    },
    {
        0x00000000u, 0xdd45aab8u, 0xbf672381u, 0x62228939u, 0x7b2231f3u, 0xa6679b4bu,
        0xc4451272u, 0x1900b8cau, 0xf64463e6u, 0x2b01c95eu, 0x49234067u, 0x9466eadfu,
        0x8d665215u, 0x5023f8adu, 0x32017194u, 0xef44db2cu, 0xe964b13du, 0x34211b85u,
        0x560392bcu, 0x8b463804u, 0x924680ceu, 0x4f032a76u, 0x2d21a34fu, 0xf06409f7u,
        0x1f20d2dbu, 0xc2657863u, 0xa047f15au, 0x7d025be2u, 0x6402e328u, 0xb9474990u,
        0xdb65c0a9u, 0x06206a11u, 0xd725148bu, 0x0a60be33u, 0x6842370au, 0xb5079db2u,
        0xac072578u, 0x71428fc0u, 0x136006f9u, 0xce25ac41u, 0x2161776du, 0xfc24ddd5u,
        0x9e0654ecu, 0x4343fe54u, 0x5a43469eu, 0x8706ec26u, 0xe524651fu, 0x3861cfa7u,
        0x3e41a5b6u, 0xe3040f0eu, 0x81268637u, 0x5c632c8fu, 0x45639445u, 0x98263efdu,
        0xfa04b7c4u, 0x27411d7cu, 0xc805c650u, 0x15406ce8u, 0x7762e5d1u, 0xaa274f69u,
        0xb327f7a3u, 0x6e625d1bu, 0x0c40d422u, 0xd1057e9au, 0xaba65fe7u, 0x76e3f55fu,
        0x14c17c66u, 0xc984d6deu, 0xd0846e14u, 0x0dc1c4acu, 0x6fe34d95u, 0xb2a6e72du,
        0x5de23c01u, 0x80a796b9u, 0xe2851f80u, 0x3fc0b538u, 0x26c00df2u, 0xfb85a74au,
        0x99a72e73u, 0x44e284cbu, 0x42c2eedau, 0x9f874462u, 0xfda5cd5bu, 0x20e067e3u,
        0x39e0df29u, 0xe4a57591u, 0x8687fca8u, 0x5bc25610u, 0xb4868d3cu, 0x69c32784u,
        0x0be1aebdu, 0xd6a40405u, 0xcfa4bccfu, 0x12e11677u, 0x70c39f4eu, 0xad8635f6u,
        0x7c834b6cu, 0xa1c6e1d4u, 0xc3e468edu, 0x1ea1c255u, 0x07a17a9fu, 0xdae4d027u,
        0xb8c6591eu, 0x6583f3a6u, 0x8ac7288au, 0x57828232u, 0x35a00b0bu, 0xe8e5a1b3u,
        0xf1e51979u, 0x2ca0b3c1u, 0x4e823af8u, 0x93c79040u, 0x95e7fa51u, 0x48a250e9u,
        0x2a80d9d0u, 0xf7c57368u, 0xeec5cba2u, 0x3380611au, 0x51a2e823u, 0x8ce7429bu,
        0x63a399b7u, 0xbee6330fu, 0xdcc4ba36u, 0x0181108eu, 0x1881a844u, 0xc5c402fcu,
        0xa7e68bc5u, 0x7aa3217du, 0x52a0c93fu, 0x8fe56387u, 0xedc7eabeu, 0x30824006u,
        0x2982f8ccu, 0xf4c75274u, 0x96e5db4du, 0x4ba071f5u, 0xa4e4aad9u, 0x79a10061u,
        0x1b838958u, 0xc6c623e0u, 0xdfc69b2au, 0x02833192u, 0x60a1b8abu, 0xbde41213u,
        0xbbc47802u, 0x6681d2bau, 0x04a35b83u, 0xd9e6f13bu, 0xc0e649f1u, 0x1da3e349u,
        0x7f816a70u, 0xa2c4c0c8u, 0x4d801be4u, 0x90c5b15cu, 0xf2e73865u, 0x2fa292ddu,
        0x36a22a17u, 0xebe780afu, 0x89c50996u, 0x5480a32eu, 0x8585ddb4u, 0x58c0770cu,
        0x3ae2fe35u, 0xe7a7548du, 0xfea7ec47u, 0x23e246ffu, 0x41c0cfc6u, 0x9c85657eu,
        0x73c1be52u, 0xae8414eau, 0xcca69dd3u, 0x11e3376bu, 0x08e38fa1u, 0xd5a62519u,
        0xb784ac20u, 0x6ac10698u, 0x6ce16c89u, 0xb1a4c631u, 0xd3864f08u, 0x0ec3e5b0u,
        0x17c35d7au, 0xca86f7c2u, 0xa8a47efbu, 0x75e1d443u, 0x9aa50f6fu, 0x47e0a5d7u,
        0x25c22ceeu, 0xf8878656u, 0xe1873e9cu, 0x3cc29424u, 0x5ee01d1du, 0x83a5b7a5u,
        0xf90696d8u, 0x24433c60u, 0x4661b559u, 0x9b241fe1u, 0x8224a72bu, 0x5f610d93u,
        0x3d4384aau, 0xe0062e12u, 0x0f42f53eu, 0xd2075f86u, 0xb025d6bfu, 0x6d607c07u,
        0x7460c4cdu, 0xa9256e75u, 0xcb07e74cu, 0x16424df4u, 0x106227e5u, 0xcd278d5du,
        0xaf050464u, 0x7240aedcu, 0x6b401616u, 0xb605bcaeu, 0xd4273597u, 0x09629f2fu,
        0xe6264403u, 0x3b63eebbu, 0x59416782u, 0x8404cd3au, 0x9d0475f0u, 0x4041df48u,
        0x22635671u, 0xff26fcc9u, 0x2e238253u, 0xf36628ebu, 0x9144a1d2u, 0x4c010b6au,
        0x5501b3a0u, 0x88441918u, 0xea669021u, 0x37233a99u, 0xd867e1b5u, 0x05224b0du,
        0x6700c234u, 0xba45688cu, 0xa345d046u, 0x7e007afeu, 0x1c22f3c7u, 0xc167597fu,
        0xc747336eu, 0x1a0299d6u, 0x782010efu, 0xa565ba57u, 0xbc65029du, 0x6120a825u,
        0x0302211cu, 0xde478ba4u, 0x31035088u, 0xec46fa30u, 0x8e647309u, 0x5321d9b1u,
        0x4a21617bu, 0x9764cbc3u, 0xf54642fau, 0x2803e842u,
    },
    {
        0x00000000u, 0x38116facu, 0x7022df58u, 0x4833b0f4u, 0xe045beb0u, 0xd854d11cu,
        0x906761e8u, 0xa8760e44u, 0xc5670b91u, 0xfd76643du, 0xb545d4c9u, 0x8d54bb65u,
        0x2522b521u, 0x1d33da8du, 0x55006a79u, 0x6d1105d5u, 0x8f2261d3u, 0xb7330e7fu,
        0xff00be8bu, 0xc711d127u, 0x6f67df63u, 0x5776b0cfu, 0x1f45003bu, 0x27546f97u,
        0x4a456a42u, 0x725405eeu, 0x3a67b51au, 0x0276dab6u, 0xaa00d4f2u, 0x9211bb5eu,
        0xda220baau, 0xe2336406u, 0x1ba8b557u, 0x23b9dafbu, 0x6b8a6a0fu, 0x539b05a3u,
        0xfbed0be7u, 0xc3fc644bu, 0x8bcfd4bfu, 0xb3debb13u, 0xdecfbec6u, 0xe6ded16au,
        0xaeed619eu, 0x96fc0e32u, 0x3e8a0076u, 0x069b6fdau, 0x4ea8df2eu, 0x76b9b082u,
        0x948ad484u, 0xac9bbb28u, 0xe4a80bdcu, 0xdcb96470u, 0x74cf6a34u, 0x4cde0598u,
        0x04edb56cu, 0x3cfcdac0u, 0x51eddf15u, 0x69fcb0b9u, 0x21cf004du, 0x19de6fe1u,
        0xb1a861a5u, 0x89b90e09u, 0xc18abefdu, 0xf99bd151u, 0x37516aaeu, 0x0f400502u,
        0x4773b5f6u, 0x7f62da5au, 0xd714d41eu, 0xef05bbb2u, 0xa7360b46u, 0x9f2764eau,
        0xf236613fu, 0xca270e93u, 0x8214be67u, 0xba05d1cbu, 0x1273df8fu, 0x2a62b023u,
        0x625100d7u, 0x5a406f7bu, 0xb8730b7du, 0x806264d1u, 0xc851d425u, 0xf040bb89u,
        0x5836b5cdu, 0x6027da61u, 0x28146a95u, 0x10050539u, 0x7d1400ecu, 0x45056f40u,
        0x0d36dfb4u, 0x3527b018u, 0x9d51be5cu, 0xa540d1f0u, 0xed736104u, 0xd5620ea8u,
        0x2cf9dff9u, 0x14e8b055u, 0x5cdb00a1u, 0x64ca6f0du, 0xccbc6149u, 0xf4ad0ee5u,
        0xbc9ebe11u, 0x848fd1bdu, 0xe99ed468u, 0xd18fbbc4u, 0x99bc0b30u, 0xa1ad649cu,
        0x09db6ad8u, 0x31ca0574u, 0x79f9b580u, 0x41e8da2cu, 0xa3dbbe2au, 0x9bcad186u,
        0xd3f96172u, 0xebe80edeu, 0x439e009au, 0x7b8f6f36u, 0x33bcdfc2u, 0x0badb06eu,
        0x66bcb5bbu, 0x5eadda17u, 0x169e6ae3u, 0x2e8f054fu, 0x86f90b0bu, 0xbee864a7u,
        0xf6dbd453u, 0xcecabbffu, 0x6ea2d55cu, 0x56b3baf0u, 0x1e800a04u, 0x269165a8u,
        0x8ee76becu, 0xb6f60440u, 0xfec5b4b4u, 0xc6d4db18u, 0xabc5decdu, 0x93d4b161u,
        0xdbe70195u, 0xe3f66e39u, 0x4b80607du, 0x73910fd1u, 0x3ba2bf25u, 0x03b3d089u,
        0xe180b48fu, 0xd991db23u, 0x91a26bd7u, 0xa9b3047bu, 0x01c50a3fu, 0x39d46593u,
        0x71e7d567u, 0x49f6bacbu, 0x24e7bf1eu, 0x1cf6d0b2u, 0x54c56046u, 0x6cd40feau,
        0xc4a201aeu, 0xfcb36e02u, 0xb480def6u, 0x8c91b15au, 0x750a600bu, 0x4d1b0fa7u,
        0x0528bf53u, 0x3d39d0ffu, 0x954fdebbu, 0xad5eb117u, 0xe56d01e3u, 0xdd7c6e4fu,
        0xb06d6b9au, 0x887c0436u, 0xc04fb4c2u, 0xf85edb6eu, 0x5028d52au, 0x6839ba86u,
        0x200a0a72u, 0x181b65deu, 0xfa2801d8u, 0xc2396e74u, 0x8a0ade80u, 0xb21bb12cu,
        0x1a6dbf68u, 0x227cd0c4u, 0x6a4f6030u, 0x525e0f9cu, 0x3f4f0a49u, 0x075e65e5u,
        0x4f6dd511u, 0x777cbabdu, 0xdf0ab4f9u, 0xe71bdb55u, 0xaf286ba1u, 0x9739040du,
        0x59f3bff2u, 0x61e2d05eu, 0x29d160aau, 0x11c00f06u, 0xb9b60142u, 0x81a76eeeu,
        0xc994de1au, 0xf185b1b6u, 0x9c94b463u, 0xa485dbcfu, 0xecb66b3bu, 0xd4a70497u,
        0x7cd10ad3u, 0x44c0657fu, 0x0cf3d58bu, 0x34e2ba27u, 0xd6d1de21u, 0xeec0b18du,
        0xa6f30179u, 0x9ee26ed5u, 0x36946091u, 0x0e850f3du, 0x46b6bfc9u, 0x7ea7d065u,
        0x13b6d5b0u, 0x2ba7ba1cu, 0x63940ae8u, 0x5b856544u, 0xf3f36b00u, 0xcbe204acu,
        0x83d1b458u, 0xbbc0dbf4u, 0x425b0aa5u, 0x7a4a6509u, 0x3279d5fdu, 0x0a68ba51u,
        0xa21eb415u, 0x9a0fdbb9u, 0xd23c6b4du, 0xea2d04e1u, 0x873c0134u, 0xbf2d6e98u,
        0xf71ede6cu, 0xcf0fb1c0u, 0x6779bf84u, 0x5f68d028u, 0x175b60dcu, 0x2f4a0f70u,
        0xcd796b76u, 0xf56804dau, 0xbd5bb42eu, 0x854adb82u, 0x2d3cd5c6u, 0x152dba6au,
        0x5d1e0a9eu, 0x650f6532u, 0x081e60e7u, 0x300f0f4bu, 0x783cbfbfu, 0x402dd013u,
        0xe85bde57u, 0xd04ab1fbu, 0x9879010fu, 0xa0686ea3u,
    },
    {
        0x00000000u, 0xef306b19u, 0xdb8ca0c3u, 0x34bccbdau, 0xb2f53777u, 0x5dc55c6eu,
        0x697997b4u, 0x8649fcadu, 0x6006181fu, 0x8f367306u, 0xbb8ab8dcu, 0x54bad3c5u,
        0xd2f32f68u, 0x3dc34471u, 0x097f8fabu, 0xe64fe4b2u, 0xc00c303eu, 0x2f3c5b27u,
        0x1b8090fdu, 0xf4b0fbe4u, 0x72f90749u, 0x9dc96c50u, 0xa975a78au, 0x4645cc93u,
        0xa00a2821u, 0x4f3a4338u, 0x7b8688e2u, 0x94b6e3fbu, 0x12ff1f56u, 0xfdcf744fu,
        0xc973bf95u, 0x2643d48cu, 0x85f4168du, 0x6ac47d94u, 0x5e78b64eu, 0xb148dd57u,
        0x370121fau, 0xd8314ae3u, 0xec8d8139u, 0x03bdea20u, 0xe5f20e92u, 0x0ac2658bu,
        0x3e7eae51u, 0xd14ec548u, 0x570739e5u, 0xb83752fcu, 0x8c8b9926u, 0x63bbf23fu,
        0x45f826b3u, 0xaac84daau, 0x9e748670u, 0x7144ed69u, 0xf70d11c4u, 0x183d7addu,
        0x2c81b107u, 0xc3b1da1eu, 0x25fe3eacu, 0xcace55b5u, 0xfe729e6fu, 0x1142f576u,
        0x970b09dbu, 0x783b62c2u, 0x4c87a918u, 0xa3b7c201u, 0x0e045bebu, 0xe13430f2u,
        0xd588fb28u, 0x3ab89031u, 0xbcf16c9cu, 0x53c10785u, 0x677dcc5fu, 0x884da746u,
        0x6e0243f4u, 0x813228edu, 0xb58ee337u, 0x5abe882eu, 0xdcf77483u, 0x33c71f9au,
        0x077bd440u, 0xe84bbf59u, 0xce086bd5u, 0x213800ccu, 0x1584cb16u, 0xfab4a00fu,
        0x7cfd5ca2u, 0x93cd37bbu, 0xa771fc61u, 0x48419778u, 0xae0e73cau, 0x413e18d3u,
        0x7582d309u, 0x9ab2b810u, 0x1cfb44bdu, 0xf3cb2fa4u, 0xc777e47eu, 0x28478f67u,
        0x8bf04d66u, 0x64c0267fu, 0x507ceda5u, 0xbf4c86bcu, 0x39057a11u, 0xd6351108u,
        0xe289dad2u, 0x0db9b1cbu, 0xebf65579u, 0x04c63e60u, 0x307af5bau, 0xdf4a9ea3u,
        0x5903620eu, 0xb6330917u, 0x828fc2cdu, 0x6dbfa9d4u, 0x4bfc7d58u, 0xa4cc1641u,
        0x9070dd9bu, 0x7f40b682u, 0xf9094a2fu, 0x16392136u, 0x2285eaecu, 0xcdb581f5u,
        0x2bfa6547u, 0xc4ca0e5eu, 0xf076c584u, 0x1f46ae9du, 0x990f5230u, 0x763f3929u,
        0x4283f2f3u, 0xadb399eau, 0x1c08b7d6u, 0xf338dccfu, 0xc7841715u, 0x28b47c0cu,
        0xaefd80a1u, 0x41cdebb8u, 0x75712062u, 0x9a414b7bu, 0x7c0eafc9u, 0x933ec4d0u,
        0xa7820f0au, 0x48b26413u, 0xcefb98beu, 0x21cbf3a7u, 0x1577387du, 0xfa475364u,
        0xdc0487e8u, 0x3334ecf1u, 0x0788272bu, 0xe8b84c32u, 0x6ef1b09fu, 0x81c1db86u,
        0xb57d105cu, 0x5a4d7b45u, 0xbc029ff7u, 0x5332f4eeu, 0x678e3f34u, 0x88be542du,
        0x0ef7a880u, 0xe1c7c399u, 0xd57b0843u, 0x3a4b635au, 0x99fca15bu, 0x76ccca42u,
        0x42700198u, 0xad406a81u, 0x2b09962cu, 0xc439fd35u, 0xf08536efu, 0x1fb55df6u,
        0xf9fab944u, 0x16cad25du, 0x22761987u, 0xcd46729eu, 0x4b0f8e33u, 0xa43fe52au,
        0x90832ef0u, 0x7fb345e9u, 0x59f09165u, 0xb6c0fa7cu, 0x827c31a6u, 0x6d4c5abfu,
        0xeb05a612u, 0x0435cd0bu, 0x308906d1u, 0xdfb96dc8u, 0x39f6897au, 0xd6c6e263u,
        0xe27a29b9u, 0x0d4a42a0u, 0x8b03be0du, 0x6433d514u, 0x508f1eceu, 0xbfbf75d7u,
        0x120cec3du, 0xfd3c8724u, 0xc9804cfeu, 0x26b027e7u, 0xa0f9db4au, 0x4fc9b053u,
        0x7b757b89u, 0x94451090u, 0x720af422u, 0x9d3a9f3bu, 0xa98654e1u, 0x46b63ff8u,
        0xc0ffc355u, 0x2fcfa84cu, 0x1b736396u, 0xf443088fu, 0xd200dc03u, 0x3d30b71au,
        0x098c7cc0u, 0xe6bc17d9u, 0x60f5eb74u, 0x8fc5806du, 0xbb794bb7u, 0x544920aeu,
        0xb206c41cu, 0x5d36af05u, 0x698a64dfu, 0x86ba0fc6u, 0x00f3f36bu, 0xefc39872u,
        0xdb7f53a8u, 0x344f38b1u, 0x97f8fab0u, 0x78c891a9u, 0x4c745a73u, 0xa344316au,
        0x250dcdc7u, 0xca3da6deu, 0xfe816d04u, 0x11b1061du, 0xf7fee2afu, 0x18ce89b6u,
        0x2c72426cu, 0xc3422975u, 0x450bd5d8u, 0xaa3bbec1u, 0x9e87751bu, 0x71b71e02u,
        0x57f4ca8eu, 0xb8c4a197u, 0x8c786a4du, 0x63480154u, 0xe501fdf9u, 0x0a3196e0u,
        0x3e8d5d3au, 0xd1bd3623u, 0x37f2d291u, 0xd8c2b988u, 0xec7e7252u, 0x034e194bu,
        0x8507e5e6u, 0x6a378effu, 0x5e8b4525u, 0xb1bb2e3cu,
    },
    {
        0x00000000u, 0x68032cc8u, 0xd0065990u, 0xb8057558u, 0xa5e0c5d1u, 0xcde3e919u,
        0x75e69c41u, 0x1de5b089u, 0x4e2dfd53u, 0x262ed19bu, 0x9e2ba4c3u, 0xf628880bu,
        0xebcd3882u, 0x83ce144au, 0x3bcb6112u, 0x53c84ddau, 0x9c5bfaa6u, 0xf458d66eu,
        0x4c5da336u, 0x245e8ffeu, 0x39bb3f77u, 0x51b813bfu, 0xe9bd66e7u, 0x81be4a2fu,
        0xd27607f5u, 0xba752b3du, 0x02705e65u, 0x6a7372adu, 0x7796c224u, 0x1f95eeecu,
        0xa7909bb4u, 0xcf93b77cu, 0x3d5b83bdu, 0x5558af75u, 0xed5dda2du, 0x855ef6e5u,
        0x98bb466cu, 0xf0b86aa4u, 0x48bd1ffcu, 0x20be3334u, 0x73767eeeu, 0x1b755226u,
        0xa370277eu, 0xcb730bb6u, 0xd696bb3fu, 0xbe9597f7u, 0x0690e2afu, 0x6e93ce67u,
        0xa100791bu, 0xc90355d3u, 0x7106208bu, 0x19050c43u, 0x04e0bccau, 0x6ce39002u,
        0xd4e6e55au, 0xbce5c992u, 0xef2d8448u, 0x872ea880u, 0x3f2bddd8u, 0x5728f110u,
        0x4acd4199u, 0x22ce6d51u, 0x9acb1809u, 0xf2c834c1u, 0x7ab7077au, 0x12b42bb2u,
        0xaab15eeau, 0xc2b27222u, 0xdf57c2abu, 0xb754ee63u, 0x0f519b3bu, 0x6752b7f3u,
        0x349afa29u, 0x5c99d6e1u, 0xe49ca3b9u, 0x8c9f8f71u, 0x917a3ff8u, 0xf9791330u,
        0x417c6668u, 0x297f4aa0u, 0xe6ecfddcu, 0x8eefd114u, 0x36eaa44cu, 0x5ee98884u,
        0x430c380du, 0x2b0f14c5u, 0x930a619du, 0xfb094d55u, 0xa8c1008fu, 0xc0c22c47u,
        0x78c7591fu, 0x10c475d7u, 0x0d21c55eu, 0x6522e996u, 0xdd279cceu, 0xb524b006u,
        0x47ec84c7u, 0x2fefa80fu, 0x97eadd57u, 0xffe9f19fu, 0xe20c4116u, 0x8a0f6ddeu,
        0x320a1886u, 0x5a09344eu, 0x09c17994u, 0x61c2555cu, 0xd9c72004u, 0xb1c40cccu,
        0xac21bc45u, 0xc422908du, 0x7c27e5d5u, 0x1424c91du, 0xdbb77e61u, 0xb3b452a9u,
        0x0bb127f1u, 0x63b20b39u, 0x7e57bbb0u, 0x16549778u, 0xae51e220u, 0xc652cee8u,
        0x959a8332u, 0xfd99affau, 0x459cdaa2u, 0x2d9ff66au, 0x307a46e3u, 0x58796a2bu,
        0xe07c1f73u, 0x887f33bbu, 0xf56e0ef4u, 0x9d6d223cu, 0x25685764u, 0x4d6b7bacu,
        0x508ecb25u, 0x388de7edu, 0x808892b5u, 0xe88bbe7du, 0xbb43f3a7u, 0xd340df6fu,
        0x6b45aa37u, 0x034686ffu, 0x1ea33676u, 0x76a01abeu, 0xcea56fe6u, 0xa6a6432eu,
        0x6935f452u, 0x0136d89au, 0xb933adc2u, 0xd130810au, 0xccd53183u, 0xa4d61d4bu,
        0x1cd36813u, 0x74d044dbu, 0x27180901u, 0x4f1b25c9u, 0xf71e5091u, 0x9f1d7c59u,
        0x82f8ccd0u, 0xeafbe018u, 0x52fe9540u, 0x3afdb988u, 0xc8358d49u, 0xa036a181u,
        0x1833d4d9u, 0x7030f811u, 0x6dd54898u, 0x05d66450u, 0xbdd31108u, 0xd5d03dc0u,
        0x8618701au, 0xee1b5cd2u, 0x561e298au, 0x3e1d0542u, 0x23f8b5cbu, 0x4bfb9903u,
        0xf3feec5bu, 0x9bfdc093u, 0x546e77efu, 0x3c6d5b27u, 0x84682e7fu, 0xec6b02b7u,
        0xf18eb23eu, 0x998d9ef6u, 0x2188ebaeu, 0x498bc766u, 0x1a438abcu, 0x7240a674u,
        0xca45d32cu, 0xa246ffe4u, 0xbfa34f6du, 0xd7a063a5u, 0x6fa516fdu, 0x07a63a35u,
        0x8fd9098eu, 0xe7da2546u, 0x5fdf501eu, 0x37dc7cd6u, 0x2a39cc5fu, 0x423ae097u,
        0xfa3f95cfu, 0x923cb907u, 0xc1f4f4ddu, 0xa9f7d815u, 0x11f2ad4du, 0x79f18185u,
        0x6414310cu, 0x0c171dc4u, 0xb412689cu, 0xdc114454u, 0x1382f328u, 0x7b81dfe0u,
        0xc384aab8u, 0xab878670u, 0xb66236f9u, 0xde611a31u, 0x66646f69u, 0x0e6743a1u,
        0x5daf0e7bu, 0x35ac22b3u, 0x8da957ebu, 0xe5aa7b23u, 0xf84fcbaau, 0x904ce762u,
        0x2849923au, 0x404abef2u, 0xb2828a33u, 0xda81a6fbu, 0x6284d3a3u, 0x0a87ff6bu,
        0x17624fe2u, 0x7f61632au, 0xc7641672u, 0xaf673abau, 0xfcaf7760u, 0x94ac5ba8u,
        0x2ca92ef0u, 0x44aa0238u, 0x594fb2b1u, 0x314c9e79u, 0x8949eb21u, 0xe14ac7e9u,
        0x2ed97095u, 0x46da5c5du, 0xfedf2905u, 0x96dc05cdu, 0x8b39b544u, 0xe33a998cu,
        0x5b3fecd4u, 0x333cc01cu, 0x60f48dc6u, 0x08f7a10eu, 0xb0f2d456u, 0xd8f1f89eu,
        0xc5144817u, 0xad1764dfu, 0x15121187u, 0x7d113d4fu,
    },
    {
        0x00000000u, 0x493c7d27u, 0x9278fa4eu, 0xdb448769u, 0x211d826du, 0x6821ff4au,
        0xb3657823u, 0xfa590504u, 0x423b04dau, 0x0b0779fdu, 0xd043fe94u, 0x997f83b3u,
        0x632686b7u, 0x2a1afb90u, 0xf15e7cf9u, 0xb86201deu, 0x847609b4u, 0xcd4a7493u,
        0x160ef3fau, 0x5f328eddu, 0xa56b8bd9u, 0xec57f6feu, 0x37137197u, 0x7e2f0cb0u,
        0xc64d0d6eu, 0x8f717049u, 0x5435f720u, 0x1d098a07u, 0xe7508f03u, 0xae6cf224u,
        0x7528754du, 0x3c14086au, 0x0d006599u, 0x443c18beu, 0x9f789fd7u, 0xd644e2f0u,
        0x2c1de7f4u, 0x65219ad3u, 0xbe651dbau, 0xf759609du, 0x4f3b6143u, 0x06071c64u,
        0xdd439b0du, 0x947fe62au, 0x6e26e32eu, 0x271a9e09u, 0xfc5e1960u, 0xb5626447u,
        0x89766c2du, 0xc04a110au, 0x1b0e9663u, 0x5232eb44u, 0xa86bee40u, 0xe1579367u,
        0x3a13140eu, 0x732f6929u, 0xcb4d68f7u, 0x827115d0u, 0x593592b9u, 0x1009ef9eu,
        0xea50ea9au, 0xa36c97bdu, 0x782810d4u, 0x31146df3u, 0x1a00cb32u, 0x533cb615u,
        0x8878317cu, 0xc1444c5bu, 0x3b1d495fu, 0x72213478u, 0xa965b311u, 0xe059ce36u,
        0x583bcfe8u, 0x1107b2cfu, 0xca4335a6u, 0x837f4881u, 0x79264d85u, 0x301a30a2u,
        0xeb5eb7cbu, 0xa262caecu, 0x9e76c286u, 0xd74abfa1u, 0x0c0e38c8u, 0x453245efu,
        0xbf6b40ebu, 0xf6573dccu, 0x2d13baa5u, 0x642fc782u, 0xdc4dc65cu, 0x9571bb7bu,
        0x4e353c12u, 0x07094135u, 0xfd504431u, 0xb46c3916u, 0x6f28be7fu, 0x2614c358u,
        0x1700aeabu, 0x5e3cd38cu, 0x857854e5u, 0xcc4429c2u, 0x361d2cc6u, 0x7f2151e1u,
        0xa465d688u, 0xed59abafu, 0x553baa71u, 0x1c07d756u, 0xc743503fu, 0x8e7f2d18u,
        0x7426281cu, 0x3d1a553bu, 0xe65ed252u, 0xaf62af75u, 0x9376a71fu, 0xda4ada38u,
        0x010e5d51u, 0x48322076u, 0xb26b2572u, 0xfb575855u, 0x2013df3cu, 0x692fa21bu,
        0xd14da3c5u, 0x9871dee2u, 0x4335598bu, 0x0a0924acu, 0xf05021a8u, 0xb96c5c8fu,
        0x6228dbe6u, 0x2b14a6c1u, 0x34019664u, 0x7d3deb43u, 0xa6796c2au, 0xef45110du,
        0x151c1409u, 0x5c20692eu, 0x8764ee47u, 0xce589360u, 0x763a92beu, 0x3f06ef99u,
        0xe44268f0u, 0xad7e15d7u, 0x572710d3u, 0x1e1b6df4u, 0xc55fea9du, 0x8c6397bau,
        0xb0779fd0u, 0xf94be2f7u, 0x220f659eu, 0x6b3318b9u, 0x916a1dbdu, 0xd856609au,
        0x0312e7f3u, 0x4a2e9ad4u, 0xf24c9b0au, 0xbb70e62du, 0x60346144u, 0x29081c63u,
        0xd3511967u, 0x9a6d6440u, 0x4129e329u, 0x08159e0eu, 0x3901f3fdu, 0x703d8edau,
        0xab7909b3u, 0xe2457494u, 0x181c7190u, 0x51200cb7u, 0x8a648bdeu, 0xc358f6f9u,
        0x7b3af727u, 0x32068a00u, 0xe9420d69u, 0xa07e704eu, 0x5a27754au, 0x131b086du,
        0xc85f8f04u, 0x8163f223u, 0xbd77fa49u, 0xf44b876eu, 0x2f0f0007u, 0x66337d20u,
        0x9c6a7824u, 0xd5560503u, 0x0e12826au, 0x472eff4du, 0xff4cfe93u, 0xb67083b4u,
        0x6d3404ddu, 0x240879fau, 0xde517cfeu, 0x976d01d9u, 0x4c2986b0u, 0x0515fb97u,
        0x2e015d56u, 0x673d2071u, 0xbc79a718u, 0xf545da3fu, 0x0f1cdf3bu, 0x4620a21cu,
        0x9d642575u, 0xd4585852u, 0x6c3a598cu, 0x250624abu, 0xfe42a3c2u, 0xb77edee5u,
        0x4d27dbe1u, 0x041ba6c6u, 0xdf5f21afu, 0x96635c88u, 0xaa7754e2u, 0xe34b29c5u,
        0x380faeacu, 0x7133d38bu, 0x8b6ad68fu, 0xc256aba8u, 0x19122cc1u, 0x502e51e6u,
        0xe84c5038u, 0xa1702d1fu, 0x7a34aa76u, 0x3308d751u, 0xc951d255u, 0x806daf72u,
        0x5b29281bu, 0x1215553cu, 0x230138cfu, 0x6a3d45e8u, 0xb179c281u, 0xf845bfa6u,
        0x021cbaa2u, 0x4b20c785u, 0x906440ecu, 0xd9583dcbu, 0x613a3c15u, 0x28064132u,
        0xf342c65bu, 0xba7ebb7cu, 0x4027be78u, 0x091bc35fu, 0xd25f4436u, 0x9b633911u,
        0xa777317bu, 0xee4b4c5cu, 0x350fcb35u, 0x7c33b612u, 0x866ab316u, 0xcf56ce31u,
        0x14124958u, 0x5d2e347fu, 0xe54c35a1u, 0xac704886u, 0x7734cfefu, 0x3e08b2c8u,
        0xc451b7ccu, 0x8d6dcaebu, 0x56294d82u, 0x1f1530a5u,
    },
};

/* ------------------------------------------------------------------------------------------ */
/* CRC32C                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static uint32_t
crc32c_update(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n >= 8) {
        uint32_t lo = ((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                       ((uint32_t)p[3] << 24)) ^ crc;
        uint32_t hi = (uint32_t)p[4] | ((uint32_t)p[5] << 8) | ((uint32_t)p[6] << 16) |
                      ((uint32_t)p[7] << 24);
        crc = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^
              crc32c_table[5][(lo >> 16) & 0xff] ^ crc32c_table[4][lo >> 24] ^
              crc32c_table[3][hi & 0xff] ^ crc32c_table[2][(hi >> 8) & 0xff] ^
              crc32c_table[1][(hi >> 16) & 0xff] ^ crc32c_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) {
        crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }
    return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DC_HW_CRC 1
/* SSE4.2 has a CRC32C instruction (the same reflected polynomial); chosen at run time. */
__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t crc, const uint8_t *p, size_t n)
{
    uint64_t c = (uint32_t)~crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, sizeof w); /* x86 is little-endian, as the CRC expects */
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) {
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    }
    return ~c32;
}

static int
cpu_has_hw_crc(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}
#else
#define DC_HW_CRC 0
static uint32_t
crc32c_hw(uint32_t crc, const uint8_t *p, size_t n)
{
    return crc32c_update(crc, p, n);
}

static int
cpu_has_hw_crc(void)
{
    return 0;
}
#endif

static inline uint32_t
crc32c_any(int hw, uint32_t crc, const uint8_t *p, size_t n)
{
    return hw ? crc32c_hw(crc, p, n) : crc32c_update(crc, p, n);
}

static uint32_t
masked_crc(int hw, const uint8_t *p, size_t n)
{
    uint32_t c = crc32c_any(hw, 0, p, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static inline uint64_t
zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (0 - ((uint64_t)v >> 63));
}

static inline int64_t
unzigzag(uint64_t u)
{
    uint64_t r = (u >> 1) ^ (0 - (u & 1));
    int64_t out;
    memcpy(&out, &r, sizeof out);
    return out;
}

static inline int64_t
wrap_add(int64_t a, int64_t b)
{
    uint64_t r = (uint64_t)a + (uint64_t)b;
    int64_t out;
    memcpy(&out, &r, sizeof out);
    return out;
}

static inline int64_t
wrap_sub(int64_t a, int64_t b)
{
    uint64_t r = (uint64_t)a - (uint64_t)b;
    int64_t out;
    memcpy(&out, &r, sizeof out);
    return out;
}

/* type(o).__name__ as a new reference (only used to build error messages). */
static PyObject *
type_name(PyObject *o)
{
    /* An interned attribute name: a fresh one per call would be kept alive by the
     * interpreter's type attribute cache (keyed by the name's address). */
    PyObject *attr = PyUnicode_InternFromString("__name__");
    PyObject *name = attr ? PyObject_GetAttr((PyObject *)Py_TYPE(o), attr) : NULL;
    Py_XDECREF(attr);
    if (name == NULL) {
        PyErr_Clear();
        name = PyUnicode_FromString(Py_TYPE(o)->tp_name);
    }
    return name;
}

/* ------------------------------------------------------------------------------------------ */
/* registration                                                                                */
/* ------------------------------------------------------------------------------------------ */

static dc_codec_state *
codec_state(PyObject *module)
{
    return dc_get_state(module)->codec;
}

/* Check that cls is a plain NamedTuple class laid out as spec says (so tp_alloc + SET_ITEM
 * builds a valid instance and GET_ITEM reads the fields we expect). */
static int
check_class(PyObject *cls, const class_spec *spec, long event_type)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_Format(PyExc_TypeError, "_codec_register: %s is not a tuple subclass", spec->name);
        return -1;
    }
    PyTypeObject *tp = (PyTypeObject *)cls;
    if (tp->tp_basicsize != PyTuple_Type.tp_basicsize ||
        tp->tp_itemsize != PyTuple_Type.tp_itemsize || tp->tp_dictoffset != 0 ||
        tp->tp_alloc == NULL) {
        PyErr_Format(PyExc_TypeError,
                     "_codec_register: %s must be a NamedTuple without extra slots", spec->name);
        return -1;
    }
    int ok = 0;
    PyObject *name = PyObject_GetAttrString(cls, "__name__");
    PyObject *fields = PyObject_GetAttrString(cls, "_fields");
    PyObject *want = PyTuple_New(spec->nfields);
    if (name == NULL || fields == NULL || want == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < spec->nfields; i++) {
        PyObject *s = PyUnicode_FromString(spec->f[i].name);
        if (s == NULL) {
            goto done;
        }
        PyTuple_SET_ITEM(want, i, s);
    }
    int eq = PyObject_RichCompareBool(fields, want, Py_EQ);
    if (eq < 0) {
        goto done;
    }
    if (!PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, spec->name) != 0 ||
        !eq) {
        PyErr_Format(PyExc_TypeError,
                     "_codec_register: %R does not match the codec schema of %s", cls,
                     spec->name);
        goto done;
    }
    if (event_type > 0) {
        PyObject *et = PyObject_GetAttrString(cls, "EVENT_TYPE");
        if (et == NULL) {
            goto done;
        }
        long v = PyLong_Check(et) ? PyLong_AsLong(et) : -1;
        Py_DECREF(et);
        if (v == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (v != event_type) {
            PyErr_Format(PyExc_TypeError, "_codec_register: %s.EVENT_TYPE must be %ld",
                         spec->name, event_type);
            goto done;
        }
    }
    ok = 1;
done:
    Py_XDECREF(name);
    Py_XDECREF(fields);
    Py_XDECREF(want);
    return ok ? 0 : -1;
}

static int
register_classes(dc_codec_state *st, PyObject *classes, PyObject *failure_cls)
{
    PyObject *seq = PySequence_Fast(classes, "_codec_register: classes must be a sequence");
    if (seq == NULL) {
        return -1;
    }
    PyObject *errmod = NULL, *err = NULL;
    int rc = -1;
    if (PySequence_Fast_GET_SIZE(seq) != DC_NTYPES) {
        PyErr_Format(PyExc_TypeError, "_codec_register: expected %d event classes",
                     DC_NTYPES);
        goto done;
    }
    for (Py_ssize_t i = 0; i < DC_NTYPES; i++) {
        if (check_class(PySequence_Fast_GET_ITEM(seq, i), &event_specs[i + 1], (long)i + 1) <
            0) {
            goto done;
        }
    }
    if (check_class(failure_cls, &failure_spec, 0) < 0) {
        goto done;
    }
    errmod = PyImport_ImportModule("durable_core.errors");
    if (errmod == NULL) {
        goto done;
    }
    err = PyObject_GetAttrString(errmod, "HistoryCorruptError");
    if (err == NULL) {
        goto done;
    }
    if (!PyType_Check(err) || !PyType_IsSubtype((PyTypeObject *)err,
                                                (PyTypeObject *)PyExc_ValueError)) {
        PyErr_SetString(PyExc_TypeError,
                        "_codec_register: HistoryCorruptError must be a ValueError subclass");
        goto done;
    }
    /* Everything checked: install (Python code ran above, so re-read nothing cached). */
    for (Py_ssize_t i = 0; i < DC_NTYPES; i++) {
        Py_XSETREF(st->classes[i + 1], Py_NewRef(PySequence_Fast_GET_ITEM(seq, i)));
    }
    Py_XSETREF(st->failure_cls, Py_NewRef(failure_cls));
    Py_XSETREF(st->corrupt_err, Py_NewRef(err));
    rc = 0;
done:
    Py_XDECREF(err);
    Py_XDECREF(errmod);
    Py_DECREF(seq);
    return rc;
}

static PyObject *
codec_register(PyObject *module, PyObject *args)
{
    PyObject *classes, *failure_cls;
    if (!PyArg_ParseTuple(args, "OO:_codec_register", &classes, &failure_cls)) {
        return NULL;
    }
    if (register_classes(codec_state(module), classes, failure_cls) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The codec needs the event classes; durable_core.history registers them when it picks the C
 * implementation. When the C functions are reached some other way (tests comparing both
 * implementations under DURABLE_CORE_NO_EXTENSIONS=1), fetch them from there. */
static dc_codec_state *
ready_state(PyObject *module)
{
    dc_codec_state *st = codec_state(module);
    if (st->corrupt_err != NULL) {
        return st;
    }
    PyObject *hist = PyImport_ImportModule("durable_core.history");
    if (hist == NULL) {
        return NULL;
    }
    st = codec_state(module);
    if (st->corrupt_err == NULL) {
        PyObject *classes = PyObject_GetAttrString(hist, "EVENT_CLASSES");
        PyObject *failure = classes ? PyObject_GetAttrString(hist, "FailureDetails") : NULL;
        int rc = failure ? register_classes(st, classes, failure) : -1;
        Py_XDECREF(classes);
        Py_XDECREF(failure);
        if (rc < 0) {
            Py_DECREF(hist);
            return NULL;
        }
    }
    Py_DECREF(hist);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* encoding                                                                                    */
/* ------------------------------------------------------------------------------------------ */

#define MAX_PATH (MAX_FAILURE_DEPTH * 2 + 4)

typedef struct {
    uint8_t *buf;
    size_t len, cap;
    dc_codec_state *st;
    Py_ssize_t item;
    int have_prev;
    int64_t prev_ts;
    int64_t ts;                   /* the current record's timestamp, once written */
    const char *path[MAX_PATH];   /* class and field names leading to the current field */
    int npath;
} encoder;

static int
enc_grow(encoder *e, size_t need)
{
    if (need > (size_t)PY_SSIZE_T_MAX - e->len) {
        PyErr_NoMemory();
        return -1;
    }
    size_t cap = e->cap ? e->cap : 256;
    while (cap < e->len + need) {
        cap = cap > (size_t)PY_SSIZE_T_MAX / 2 ? e->len + need : cap * 2;
    }
    uint8_t *nb = PyMem_Realloc(e->buf, cap);
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    e->buf = nb;
    e->cap = cap;
    return 0;
}

static inline int
enc_reserve(encoder *e, size_t n)
{
    if (e->cap - e->len >= n) {
        return 0;
    }
    return enc_grow(e, n);
}

static inline int
put_varint(encoder *e, uint64_t v)
{
    if (enc_reserve(e, 10) < 0) {
        return -1;
    }
    uint8_t *p = e->buf + e->len;
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    e->len = (size_t)(p - e->buf);
    return 0;
}

static inline int
put_byte(encoder *e, uint8_t b)
{
    if (enc_reserve(e, 1) < 0) {
        return -1;
    }
    e->buf[e->len++] = b;
    return 0;
}

static int
put_bytes(encoder *e, const void *p, size_t n)
{
    if (put_varint(e, (uint64_t)n + 1) < 0 || enc_reserve(e, n) < 0) {
        return -1;
    }
    memcpy(e->buf + e->len, p, n);
    e->len += n;
    return 0;
}

/* Raise exc_type("encode: item N: Class.field...: <fmt>"). Returns -1. */
static int
enc_error(encoder *e, PyObject *exc_type, const char *fmt, ...)
{
    char path[1024];
    size_t used = 0;
    path[0] = '\0';
    for (int i = 0; i < e->npath && used < sizeof path - 1; i++) {
        int n = PyOS_snprintf(path + used, sizeof path - used, "%s%s", i ? "." : "",
                              e->path[i]);
        if (n < 0) {
            break;
        }
        used += (size_t)n;
    }
    va_list va;
    va_start(va, fmt);
    PyObject *detail = PyUnicode_FromFormatV(fmt, va);
    va_end(va);
    if (detail != NULL) {
        PyErr_Format(exc_type, "encode: item %zd: %s: %U", e->item, path, detail);
        Py_DECREF(detail);
    }
    return -1;
}

static int
enc_type_error(encoder *e, const char *want, PyObject *got)
{
    PyObject *tn = type_name(got);
    if (tn == NULL) {
        return -1;
    }
    enc_error(e, PyExc_TypeError, "expected %s, got %U", want, tn);
    Py_DECREF(tn);
    return -1;
}

static int
get_i64(encoder *e, PyObject *v, const char *want, int64_t *out)
{
    if (!PyLong_Check(v) || PyBool_Check(v)) {
        return enc_type_error(e, want, v);
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow) {
        return enc_error(e, PyExc_OverflowError, "int out of range for int64");
    }
    if (x == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = (int64_t)x;
    return 0;
}

static int
put_str(encoder *e, PyObject *v)
{
    if (PyUnicode_IS_COMPACT_ASCII(v)) {
        return put_bytes(e, PyUnicode_DATA(v), (size_t)PyUnicode_GET_LENGTH(v));
    }
    PyObject *b = PyUnicode_AsUTF8String(v);
    if (b == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            return enc_error(e, PyExc_ValueError,
                             "str is not encodable as UTF-8 (lone surrogate)");
        }
        return -1;
    }
    int rc = put_bytes(e, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
    Py_DECREF(b);
    return rc;
}

static int enc_fields(encoder *e, PyObject *tuple, const class_spec *spec, Py_ssize_t n,
                      int depth);

static int
enc_failure(encoder *e, PyObject *v, int depth)
{
    if (v == Py_None) {
        return put_byte(e, 0);
    }
    if ((PyObject *)Py_TYPE(v) != e->st->failure_cls) {
        return enc_type_error(e, "FailureDetails or None", v);
    }
    if (PyTuple_GET_SIZE(v) != failure_spec.nfields) {
        return enc_error(e, PyExc_TypeError, "FailureDetails has %zd fields, expected 5",
                         PyTuple_GET_SIZE(v));
    }
    if (depth > MAX_FAILURE_DEPTH) {
        return enc_error(e, PyExc_ValueError, "FailureDetails nested more than %d deep",
                         MAX_FAILURE_DEPTH);
    }
    if (put_byte(e, 1) < 0) {
        return -1;
    }
    return enc_fields(e, v, &failure_spec, failure_spec.nfields, depth);
}

static int
enc_tags(encoder *e, PyObject *v)
{
    if (v == Py_None) {
        return put_byte(e, 0);
    }
    if (!PyDict_Check(v)) {
        return enc_type_error(e, "dict[str, str] or None", v);
    }
    if (put_varint(e, (uint64_t)PyDict_GET_SIZE(v) + 1) < 0) {
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *k, *val;
    /* No Python code runs in this loop (str checks and UTF-8 encoding only). */
    while (PyDict_Next(v, &pos, &k, &val)) {
        PyObject *kv[2] = {k, val};
        for (int j = 0; j < 2; j++) {
            if (!PyUnicode_Check(kv[j])) {
                PyObject *tn = type_name(kv[j]);
                if (tn != NULL) {
                    enc_error(e, PyExc_TypeError, "tag keys and values must be str, got %U", tn);
                    Py_DECREF(tn);
                }
                return -1;
            }
            if (put_str(e, kv[j]) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* Write fields [0, n) of tuple as spec says. */
static int
enc_fields(encoder *e, PyObject *tuple, const class_spec *spec, Py_ssize_t n, int depth)
{
    if (e->npath >= MAX_PATH) {
        PyErr_SetString(PyExc_SystemError, "history codec: path too deep");
        return -1;
    }
    int slot = e->npath++;
    int rc = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyTuple_GET_ITEM(tuple, i);
        int64_t x;
        e->path[slot] = spec->f[i].name;
        switch (spec->f[i].kind) {
        case K_INT:
            if (get_i64(e, v, "int", &x) < 0 || put_varint(e, zigzag(x)) < 0) {
                goto done;
            }
            break;
        case K_TS:
            if (get_i64(e, v, "int", &x) < 0) {
                goto done;
            }
            e->ts = x;
            if (put_varint(e, zigzag(e->have_prev ? wrap_sub(x, e->prev_ts) : x)) < 0) {
                goto done;
            }
            break;
        case K_TIME_REL:
            if (get_i64(e, v, "int", &x) < 0 || put_varint(e, zigzag(wrap_sub(x, e->ts))) < 0) {
                goto done;
            }
            break;
        case K_STR:
        case K_OPT_STR:
            if (v == Py_None && spec->f[i].kind == K_OPT_STR) {
                if (put_byte(e, 0) < 0) {
                    goto done;
                }
            }
            else if (!PyUnicode_Check(v)) {
                enc_type_error(e, spec->f[i].kind == K_OPT_STR ? "str or None" : "str", v);
                goto done;
            }
            else if (put_str(e, v) < 0) {
                goto done;
            }
            break;
        case K_OPT_BYTES:
            if (v == Py_None) {
                if (put_byte(e, 0) < 0) {
                    goto done;
                }
            }
            else if (!PyBytes_Check(v)) {
                enc_type_error(e, "bytes or None", v);
                goto done;
            }
            else if (put_bytes(e, PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v)) < 0) {
                goto done;
            }
            break;
        case K_BOOL:
            if (!PyBool_Check(v)) {
                enc_type_error(e, "bool", v);
                goto done;
            }
            if (put_byte(e, v == Py_True) < 0) {
                goto done;
            }
            break;
        case K_OPT_INT:
            if (v == Py_None) {
                if (put_byte(e, 0) < 0) {
                    goto done;
                }
            }
            else if (get_i64(e, v, "int or None", &x) < 0 || put_byte(e, 1) < 0 ||
                     put_varint(e, zigzag(x)) < 0) {
                goto done;
            }
            break;
        case K_TAGS:
            if (enc_tags(e, v) < 0) {
                goto done;
            }
            break;
        default: /* K_OPT_FAILURE */
            if (enc_failure(e, v, depth + 1) < 0) {
                goto done;
            }
            break;
        }
    }
    rc = 0;
done:
    e->npath = slot;
    return rc;
}

static int
enc_event(encoder *e, PyObject *ev)
{
    PyTypeObject *tp = Py_TYPE(ev);
    int tag = 0;
    for (int t = 1; t <= DC_NTYPES; t++) {
        if ((PyObject *)tp == e->st->classes[t]) {
            tag = t;
            break;
        }
    }
    if (tag == 0) {
        PyObject *tn = type_name(ev);
        if (tn != NULL) {
            PyErr_Format(PyExc_TypeError, "encode: item %zd: expected a history event, got %U",
                         e->item, tn);
            Py_DECREF(tn);
        }
        return -1;
    }
    const class_spec *spec = &event_specs[tag];
    if (PyTuple_GET_SIZE(ev) != spec->nfields) {
        PyErr_Format(PyExc_TypeError, "encode: item %zd: %s has %zd fields, expected %zd",
                     e->item, spec->name, PyTuple_GET_SIZE(ev), spec->nfields);
        return -1;
    }
    /* Reserve room for the longest length varint we allow (5 bytes); moved down afterwards. */
    size_t start = e->len;
    if (enc_reserve(e, 6) < 0) {
        return -1;
    }
    e->len += 5;
    size_t body = e->len;
    e->buf[e->len++] = (uint8_t)(tag | (e->have_prev ? 0 : ABSOLUTE_FLAG));
    /* error messages name "Class.field": enc_fields pushes the field after the class */
    e->path[0] = spec->name;
    e->npath = 1;
    Py_ssize_t n = spec->nfields; /* trailing fields left at None are not written */
    while (n > spec_base(spec) && PyTuple_GET_ITEM(ev, n - 1) == Py_None) {
        n--;
    }
    if (enc_fields(e, ev, spec, n, 0) < 0) {
        return -1;
    }
    e->npath = 0;
    size_t blen = e->len - body;
    if (blen > MAX_RECORD_SIZE) {
        PyErr_Format(PyExc_ValueError, "encode: item %zd: %s record is too large (%zu bytes)",
                     e->item, spec->name, blen);
        return -1;
    }
    uint8_t lenbuf[5];
    size_t k = 0;
    uint64_t v = blen;
    while (v >= 0x80) {
        lenbuf[k++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    lenbuf[k++] = (uint8_t)v;
    memmove(e->buf + start + k, e->buf + body, blen);
    memcpy(e->buf + start, lenbuf, k);
    e->len = start + k + blen;
    uint32_t crc = masked_crc(e->st->hw_crc, e->buf + start, k + blen);
    if (enc_reserve(e, 4) < 0) {
        return -1;
    }
    uint8_t *p = e->buf + e->len;
    p[0] = (uint8_t)crc;
    p[1] = (uint8_t)(crc >> 8);
    p[2] = (uint8_t)(crc >> 16);
    p[3] = (uint8_t)(crc >> 24);
    e->len += 4;
    e->prev_ts = e->ts;
    e->have_prev = 1;
    e->item++;
    return 0;
}

static PyObject *
encode_impl(PyObject *module, PyObject *events, int with_header)
{
    dc_codec_state *st = ready_state(module);
    if (st == NULL) {
        return NULL;
    }
    PyObject *seq;
    if (PyList_CheckExact(events) || PyTuple_CheckExact(events)) {
        seq = Py_NewRef(events);
    }
    else {
        PyObject *it = PyObject_GetIter(events);
        if (it == NULL) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyObject *tn = type_name(events);
                if (tn != NULL) {
                    PyErr_Format(PyExc_TypeError,
                                 "encode: events must be an iterable of history events, got %U",
                                 tn);
                    Py_DECREF(tn);
                }
            }
            return NULL;
        }
        seq = PySequence_List(it);
        Py_DECREF(it);
        if (seq == NULL) {
            return NULL;
        }
    }
    /* The iteration above may have run Python code: fetch the state again. */
    st = codec_state(module);
    encoder e = {0};
    e.st = st;
    PyObject *out = NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (enc_grow(&e, (size_t)n * 48 + 16) < 0) {
        goto done;
    }
    if (with_header) {
        memcpy(e.buf, HEADER, HEADER_SIZE);
        e.len = HEADER_SIZE;
    }
    /* No Python code runs while encoding, so the list cannot change under us. */
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (enc_event(&e, items[i]) < 0) {
            goto done;
        }
    }
    out = PyBytes_FromStringAndSize((const char *)e.buf, (Py_ssize_t)e.len);
done:
    PyMem_Free(e.buf);
    Py_DECREF(seq);
    return out;
}

static PyObject *
codec_encode(PyObject *module, PyObject *events)
{
    return encode_impl(module, events, 1);
}

static PyObject *
codec_encode_records(PyObject *module, PyObject *events)
{
    return encode_impl(module, events, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* decoding                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject *obj;       /* a decoded str (strong reference) or NULL */
    const uint8_t *src;  /* the bytes it came from, inside the buffer being decoded */
    size_t len;
} str_cache_entry;

typedef struct {
    dc_codec_state *st;
    const uint8_t *p;   /* next byte of the current record body */
    const uint8_t *end; /* end of the current record body */
    int64_t ts;         /* the current record's timestamp */
    char msg[200];      /* why the data is bad; empty while only a Python error is set */
    str_cache_entry cache[STR_CACHE_SIZE];
} reader;

/* Record that the data is bad (the caller raises HistoryCorruptError with the record's
 * offset). Returns -1. */
static int
bad(reader *r, const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    PyOS_vsnprintf(r->msg, sizeof r->msg, fmt, va);
    va_end(va);
    if (r->msg[0] == '\0') {
        r->msg[0] = '?';
        r->msg[1] = '\0';
    }
    return -1;
}

static inline int
rd_varint(reader *r, const char *cname, const char *fname, uint64_t *out)
{
    const uint8_t *p = r->p;
    if (p < r->end && *p < 0x80) {
        *out = *p;
        r->p = p + 1;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (p >= r->end) {
            return bad(r, "%s.%s runs past the end of the record", cname, fname);
        }
        uint8_t b = *p++;
        if (i == 9 && b > 1) {
            return bad(r, "bad varint in %s.%s", cname, fname);
        }
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (b < 0x80) {
            *out = v;
            r->p = p;
            return 0;
        }
    }
    return bad(r, "bad varint in %s.%s", cname, fname);
}

static inline int
rd_zigzag(reader *r, const char *cname, const char *fname, int64_t *out)
{
    uint64_t u = 0;
    if (rd_varint(r, cname, fname, &u) < 0) {
        return -1;
    }
    *out = unzigzag(u);
    return 0;
}

static int
rd_flag(reader *r, const char *cname, const char *fname, const char *kind, int *out)
{
    uint64_t u = 0;
    if (rd_varint(r, cname, fname, &u) < 0) {
        return -1;
    }
    if (u > 1) {
        return bad(r, "bad %s in %s.%s", kind, cname, fname);
    }
    *out = (int)u;
    return 0;
}

/* Read "n + 1" and check n bytes remain: *n = -1 for None. */
static int
rd_len(reader *r, const char *cname, const char *fname, Py_ssize_t *n)
{
    uint64_t u = 0;
    if (rd_varint(r, cname, fname, &u) < 0) {
        return -1;
    }
    if (u == 0) {
        *n = -1;
        return 0;
    }
    if (u - 1 > (uint64_t)(r->end - r->p)) {
        return bad(r, "%s.%s runs past the end of the record", cname, fname);
    }
    *n = (Py_ssize_t)(u - 1);
    return 0;
}

static PyObject *
rd_utf8(reader *r, const char *cname, const char *fname, Py_ssize_t n)
{
    const uint8_t *s = r->p;
    str_cache_entry *ce = NULL;
    if (n <= STR_CACHE_MAX_LEN) {
        uint32_t h = (uint32_t)n * 0x9e3779b1u;
        for (Py_ssize_t i = 0; i < n; i++) {
            h = (h ^ s[i]) * 0x01000193u;
        }
        ce = &r->cache[(h ^ (h >> 16)) & (STR_CACHE_SIZE - 1)];
        if (ce->obj != NULL && ce->len == (size_t)n && memcmp(ce->src, s, (size_t)n) == 0) {
            r->p += n;
            return Py_NewRef(ce->obj);
        }
    }
    PyObject *str = PyUnicode_DecodeUTF8((const char *)s, n, "strict");
    if (str == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            bad(r, "invalid UTF-8 in %s.%s", cname, fname);
        }
        return NULL;
    }
    if (ce != NULL) {
        Py_XSETREF(ce->obj, Py_NewRef(str));
        ce->src = s;
        ce->len = (size_t)n;
    }
    r->p += n;
    return str;
}

static PyObject *
rd_str(reader *r, const char *cname, const char *fname, int optional)
{
    Py_ssize_t n = 0;
    if (rd_len(r, cname, fname, &n) < 0) {
        return NULL;
    }
    if (n < 0) {
        if (optional) {
            Py_RETURN_NONE;
        }
        bad(r, "missing required %s.%s", cname, fname);
        return NULL;
    }
    return rd_utf8(r, cname, fname, n);
}

static PyObject *rd_tuple(reader *r, PyObject *cls, const class_spec *spec, Py_ssize_t first,
                          int depth, PyObject *ev);

static PyObject *
rd_value(reader *r, const char *cname, const field_spec *f, int depth)
{
    int64_t x = 0;
    int flag = 0;
    Py_ssize_t n = 0;
    switch (f->kind) {
    case K_INT:
        if (rd_zigzag(r, cname, f->name, &x) < 0) {
            return NULL;
        }
        return PyLong_FromLongLong(x);
    case K_TIME_REL:
        if (rd_zigzag(r, cname, f->name, &x) < 0) {
            return NULL;
        }
        return PyLong_FromLongLong(wrap_add(r->ts, x));
    case K_STR:
    case K_OPT_STR:
        return rd_str(r, cname, f->name, f->kind == K_OPT_STR);
    case K_OPT_BYTES: {
        if (rd_len(r, cname, f->name, &n) < 0) {
            return NULL;
        }
        if (n < 0) {
            Py_RETURN_NONE;
        }
        PyObject *b = PyBytes_FromStringAndSize((const char *)r->p, n);
        r->p += n;
        return b;
    }
    case K_BOOL:
        if (rd_flag(r, cname, f->name, "bool", &flag) < 0) {
            return NULL;
        }
        return Py_NewRef(flag ? Py_True : Py_False);
    case K_OPT_INT:
        if (rd_flag(r, cname, f->name, "presence flag", &flag) < 0) {
            return NULL;
        }
        if (!flag) {
            Py_RETURN_NONE;
        }
        if (rd_zigzag(r, cname, f->name, &x) < 0) {
            return NULL;
        }
        return PyLong_FromLongLong(x);
    case K_TAGS: {
        uint64_t count = 0;
        if (rd_varint(r, cname, f->name, &count) < 0) {
            return NULL;
        }
        if (count == 0) {
            Py_RETURN_NONE;
        }
        PyObject *d = PyDict_New();
        if (d == NULL) {
            return NULL;
        }
        for (uint64_t i = 0; i < count - 1; i++) {
            PyObject *k = rd_str(r, cname, f->name, 0);
            if (k == NULL) {
                Py_DECREF(d);
                return NULL;
            }
            PyObject *v = rd_str(r, cname, f->name, 0);
            if (v == NULL || PyDict_SetItem(d, k, v) < 0) {
                Py_DECREF(k);
                Py_XDECREF(v);
                Py_DECREF(d);
                return NULL;
            }
            Py_DECREF(k);
            Py_DECREF(v);
        }
        return d;
    }
    default: /* K_OPT_FAILURE */
        if (rd_flag(r, cname, f->name, "presence flag", &flag) < 0) {
            return NULL;
        }
        if (!flag) {
            Py_RETURN_NONE;
        }
        if (depth >= MAX_FAILURE_DEPTH) {
            bad(r, "FailureDetails nested more than %d deep", MAX_FAILURE_DEPTH);
            return NULL;
        }
        return rd_tuple(r, r->st->failure_cls, &failure_spec, 0, depth + 1, NULL);
    }
}

/* Like CPython does for plain tuples during a collection: an event whose fields are all
 * atomic (ints, str, bytes, None, bools) or untracked FailureDetails (immutable, so they stay
 * untracked) cannot be part of a reference cycle, so the collector need not traverse it.
 * Decoding allocates thousands of events; leaving them tracked makes the collections they
 * trigger cost more than the decode itself. An event with a tags dict stays tracked: a dict
 * is mutable and may later hold containers (CPython never untracks a tuple holding a dict).
 * The instance's reference to its class is a real, external reference, so untracking it is
 * safe. */
static void
maybe_untrack(PyObject *ev, const class_spec *spec)
{
    for (Py_ssize_t i = 0; i < spec->nfields; i++) {
        /* only these kinds can hold a container; the others are ints, str, bytes, None */
        PyObject *v = PyTuple_GET_ITEM(ev, i);
        if (spec->f[i].kind == K_TAGS && v != Py_None) {
            return;
        }
        if (spec->f[i].kind == K_OPT_FAILURE && v != Py_None && PyObject_GC_IsTracked(v)) {
            return;
        }
    }
    PyObject_GC_UnTrack(ev);
}

/* A fresh event (or FailureDetails) instance with n NULL fields, built without running
 * Python code: the classes are tuple subclasses with __slots__ = (). */
static PyObject *
new_record(PyObject *cls, Py_ssize_t n)
{
    PyTypeObject *tp = (PyTypeObject *)cls;
    PyObject *ob = tp->tp_alloc(tp, n);
#if PY_VERSION_HEX >= 0x030E0000
    if (ob != NULL) {
        /* 3.14 caches tuple hashes; -1 means "not computed" and tp_alloc zero-fills. */
        ((PyTupleObject *)ob)->ob_hash = -1;
    }
#endif
    return ob;
}

/* Fill fields [first, nfields) of ev (a fresh instance of cls, or NULL to allocate one).
 * Returns ev (a new reference) or NULL. */
static PyObject *
rd_tuple(reader *r, PyObject *cls, const class_spec *spec, Py_ssize_t first, int depth,
         PyObject *ev)
{
    if (ev == NULL) {
        ev = new_record(cls, spec->nfields);
        if (ev == NULL) {
            return NULL;
        }
    }
    Py_ssize_t base = spec_base(spec);
    for (Py_ssize_t i = first; i < spec->nfields; i++) {
        if (i >= base && r->p == r->end) { /* a trailing field the record does not hold */
            PyTuple_SET_ITEM(ev, i, Py_NewRef(Py_None));
            continue;
        }
        PyObject *v = rd_value(r, spec->name, &spec->f[i], depth);
        if (v == NULL) {
            Py_DECREF(ev);
            return NULL;
        }
        PyTuple_SET_ITEM(ev, i, v);
    }
    maybe_untrack(ev, spec);
    return ev;
}

static void
raise_corrupt(dc_codec_state *st, const char *where, Py_ssize_t offset, int torn,
              const char *msg)
{
    PyObject *text;
    if (where != NULL) {
        text = PyUnicode_FromFormat("%s: %s", where, msg);
    }
    else {
        text = PyUnicode_FromFormat("record at offset %zd: %s", offset, msg);
    }
    if (text == NULL) {
        return;
    }
    PyObject *exc = PyObject_CallFunction(st->corrupt_err, "OnO", text, offset,
                                          torn ? Py_True : Py_False);
    Py_DECREF(text);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

/* Decode the records in data[pos:size]. */
static PyObject *
decode_records_impl(dc_codec_state *st, const uint8_t *data, Py_ssize_t size, Py_ssize_t pos,
                    int lenient)
{
    PyObject *events = PyList_New(0);
    if (events == NULL) {
        return NULL;
    }
    reader *r = PyMem_Calloc(1, sizeof(reader));
    if (r == NULL) {
        Py_DECREF(events);
        return PyErr_NoMemory();
    }
    r->st = st;
    int have_prev = 0;
    int64_t prev_ts = 0;
    Py_ssize_t start = pos;
    int torn = 0;
    while (pos < size) {
        start = pos;
        /* record length */
        uint64_t length = 0;
        int i, done = 0;
        for (i = 0; i < 10; i++) {
            if (pos >= size) {
                torn = 1;
                bad(r, "truncated record length");
                goto fail;
            }
            uint8_t b = data[pos++];
            if (i == 9 && b > 1) {
                break;
            }
            length |= (uint64_t)(b & 0x7f) << (7 * i);
            if (b < 0x80) {
                done = 1;
                break;
            }
        }
        if (!done) {
            bad(r, "bad record length varint");
            goto fail;
        }
        if (length == 0 || length > MAX_RECORD_SIZE) {
            bad(r, "bad record length %llu", (unsigned long long)length);
            goto fail;
        }
        Py_ssize_t body = pos;
        if ((uint64_t)(size - body) < length + 4) {
            torn = 1;
            bad(r, "truncated record (needs %lld bytes, %lld left)",
                (long long)((uint64_t)(body - start) + length + 4), (long long)(size - start));
            goto fail;
        }
        Py_ssize_t end = body + (Py_ssize_t)length;
        const uint8_t *c = data + end;
        uint32_t stored = (uint32_t)c[0] | ((uint32_t)c[1] << 8) | ((uint32_t)c[2] << 16) |
                          ((uint32_t)c[3] << 24);
        if (masked_crc(st->hw_crc, data + start, (size_t)(end - start)) != stored) {
            bad(r, "checksum mismatch");
            goto fail;
        }
        uint8_t tbyte = data[body];
        int tag = tbyte & TYPE_MASK;
        if (tag < 1 || tag > DC_NTYPES) {
            bad(r, "unknown event type %d", tag);
            goto fail;
        }
        const class_spec *spec = &event_specs[tag];
        r->p = data + body + 1;
        r->end = data + end;
        int64_t eid = 0, ts = 0;
        if (rd_zigzag(r, spec->name, "event_id", &eid) < 0 ||
            rd_zigzag(r, spec->name, "timestamp", &ts) < 0) {
            goto fail;
        }
        if (!(tbyte & ABSOLUTE_FLAG)) {
            if (!have_prev) {
                bad(r, "relative timestamp without a preceding record");
                goto fail;
            }
            ts = wrap_add(prev_ts, ts);
        }
        r->ts = ts;
        PyObject *ev = new_record(st->classes[tag], spec->nfields);
        if (ev == NULL) {
            goto fail;
        }
        PyObject *o = PyLong_FromLongLong(eid);
        if (o == NULL) {
            Py_DECREF(ev);
            goto fail;
        }
        PyTuple_SET_ITEM(ev, 0, o);
        o = PyLong_FromLongLong(ts);
        if (o == NULL) {
            Py_DECREF(ev);
            goto fail;
        }
        PyTuple_SET_ITEM(ev, 1, o);
        ev = rd_tuple(r, NULL, spec, 2, 0, ev);
        if (ev == NULL) {
            goto fail;
        }
        if (r->p != r->end) {
            Py_DECREF(ev);
            bad(r, "%lld trailing bytes in the record", (long long)(r->end - r->p));
            goto fail;
        }
        int rc = PyList_Append(events, ev);
        Py_DECREF(ev);
        if (rc < 0) {
            goto fail;
        }
        prev_ts = ts;
        have_prev = 1;
        pos = end + 4;
    }
    goto out;
fail:
    if (r->msg[0] != '\0' && torn && lenient) {
        goto out; /* a torn tail: keep what precedes it */
    }
    if (r->msg[0] != '\0') {
        raise_corrupt(st, NULL, start, torn, r->msg);
    }
    Py_CLEAR(events);
out:
    for (int i = 0; i < STR_CACHE_SIZE; i++) {
        Py_XDECREF(r->cache[i].obj);
    }
    PyMem_Free(r);
    return events;
}

static int
get_view(PyObject *data, Py_buffer *view)
{
    if (PyObject_GetBuffer(data, view, PyBUF_SIMPLE) == 0) {
        return 0;
    }
    if (PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        PyObject *tn = type_name(data);
        if (tn != NULL) {
            PyErr_Format(PyExc_TypeError, "decode: expected a bytes-like object, got %U", tn);
            Py_DECREF(tn);
        }
    }
    else if (PyErr_ExceptionMatches(PyExc_BufferError)) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "decode: expected a contiguous bytes-like object");
    }
    return -1;
}

static PyObject *
decode_common(PyObject *module, PyObject *args, PyObject *kwargs, int with_header)
{
    static char *kwlist[] = {"data", "lenient", NULL};
    PyObject *data;
    int lenient = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs,
                                     with_header ? "O|$p:decode" : "O|$p:decode_records",
                                     kwlist, &data, &lenient)) {
        return NULL;
    }
    dc_codec_state *st = ready_state(module);
    if (st == NULL) {
        return NULL;
    }
    Py_buffer view;
    if (get_view(data, &view) < 0) {
        return NULL;
    }
    st = codec_state(module);
    const uint8_t *buf = (const uint8_t *)view.buf;
    Py_ssize_t size = view.len;
    PyObject *out = NULL;
    Py_ssize_t pos = 0;
    if (with_header) {
        if (size < HEADER_SIZE) {
            if (size == 0 || memcmp(buf, HEADER, (size_t)size) == 0) {
                if (lenient) {
                    out = PyList_New(0);
                }
                else {
                    raise_corrupt(st, "header", 0, 1, "truncated header");
                }
                goto done;
            }
            raise_corrupt(st, "header", 0, 0, "not a durable_core history (bad magic)");
            goto done;
        }
        if (memcmp(buf, HEADER, 3) != 0) {
            raise_corrupt(st, "header", 0, 0, "not a durable_core history (bad magic)");
            goto done;
        }
        if (buf[3] != HEADER[3]) {
            char msg[64];
            PyOS_snprintf(msg, sizeof msg, "unsupported history format version %d", buf[3]);
            raise_corrupt(st, "header", 0, 0, msg);
            goto done;
        }
        pos = HEADER_SIZE;
    }
    out = decode_records_impl(st, buf, size, pos, lenient);
done:
    PyBuffer_Release(&view);
    return out;
}

static PyObject *
codec_decode(PyObject *module, PyObject *args, PyObject *kwargs)
{
    return decode_common(module, args, kwargs, 1);
}

static PyObject *
codec_decode_records(PyObject *module, PyObject *args, PyObject *kwargs)
{
    return decode_common(module, args, kwargs, 0);
}

static PyObject *
crc32c_common(PyObject *args, const char *fmt, int hw)
{
    Py_buffer view;
    unsigned long crc = 0;
    if (!PyArg_ParseTuple(args, fmt, &view, &crc)) {
        return NULL;
    }
    uint32_t c = crc32c_any(hw, (uint32_t)crc, (const uint8_t *)view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

static PyObject *
codec_crc32c(PyObject *module, PyObject *args)
{
    return crc32c_common(args, "y*|k:crc32c", codec_state(module)->hw_crc);
}

/* The portable table-driven path, whatever the CPU offers (for tests). */
static PyObject *
codec_crc32c_sw(PyObject *module, PyObject *args)
{
    (void)module;
    return crc32c_common(args, "y*|k:_crc32c_sw", 0);
}

/* ------------------------------------------------------------------------------------------ */
/* part hooks                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static PyMethodDef codec_methods[] = {
    {"encode", (PyCFunction)codec_encode, METH_O,
     "encode(events) -> bytes\n\nA complete history: the header, then one record per event."},
    {"encode_records", (PyCFunction)codec_encode_records, METH_O,
     "encode_records(events) -> bytes\n\nRecords without the header, to append to a history."},
    {"decode", (PyCFunction)(void (*)(void))codec_decode, METH_VARARGS | METH_KEYWORDS,
     "decode(data, *, lenient=False) -> list\n\nDecode a complete history; raises "
     "HistoryCorruptError on damage (lenient: a torn tail is dropped)."},
    {"decode_records", (PyCFunction)(void (*)(void))codec_decode_records,
     METH_VARARGS | METH_KEYWORDS,
     "decode_records(data, *, lenient=False) -> list\n\nDecode headerless records."},
    {"crc32c", (PyCFunction)codec_crc32c, METH_VARARGS,
     "crc32c(data, crc=0) -> int\n\nCRC32C (Castagnoli) of data, continuing from crc."},
    {"_crc32c_sw", (PyCFunction)codec_crc32c_sw, METH_VARARGS,
     "_crc32c_sw(data, crc=0) -> int\n\ncrc32c() computed without the CPU's CRC instruction."},
    {"_codec_register", (PyCFunction)codec_register, METH_VARARGS,
     "_codec_register(event_classes, FailureDetails)\n\nHand the codec the event classes "
     "(done once by durable_core.history)."},
    {NULL, NULL, 0, NULL},
};

int
dc_codec_exec(PyObject *module, dc_module_state *st)
{
    st->codec = PyMem_Calloc(1, sizeof(dc_codec_state));
    if (st->codec == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    st->codec->hw_crc = cpu_has_hw_crc();
    if (PyModule_AddIntConstant(module, "_CODEC_HW_CRC", st->codec->hw_crc) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, codec_methods);
}

int
dc_codec_traverse(dc_module_state *st, visitproc visit, void *arg)
{
    dc_codec_state *cs = st->codec;
    if (cs == NULL) {
        return 0;
    }
    for (int i = 0; i <= DC_NTYPES; i++) {
        Py_VISIT(cs->classes[i]);
    }
    Py_VISIT(cs->failure_cls);
    Py_VISIT(cs->corrupt_err);
    return 0;
}

void
dc_codec_clear(dc_module_state *st)
{
    dc_codec_state *cs = st->codec;
    if (cs == NULL) {
        return;
    }
    for (int i = 0; i <= DC_NTYPES; i++) {
        Py_CLEAR(cs->classes[i]);
    }
    Py_CLEAR(cs->failure_cls);
    Py_CLEAR(cs->corrupt_err);
}

void
dc_codec_free(dc_module_state *st)
{
    if (st->codec != NULL) {
        dc_codec_clear(st);
        PyMem_Free(st->codec);
        st->codec = NULL;
    }
}
