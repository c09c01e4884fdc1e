/* One-pass averaged-SGD step (torch.optim.ASGD) over a list of CPU tensors.
 *
 * The math is reference.asgd_step (src/asgd_bridge/reference.py), per tensor k, step t = step_k + 1:
 *
 *     g   = (maximize ? -grad : grad) (+ weight_decay * p)
 *     p   = p * (1 - lambd * eta) - eta * g
 *     ax  = mu == 1 ? p : ax + mu * (p - ax)
 *     step = t;  eta = lr / (1 + lambd * lr * t) ** alpha;  mu = 1 / max(1, t - t0)
 *
 * eta and mu are read from the tensor's state (torch's schedule) or, under immediate_lr /
 * bottou_average, computed from t at the start of the step. Each element is read once (p, grad,
 * ax) and written once (p, ax): 20 bytes per fp32 element, the floor for this update. Arithmetic
 * is done in float for float/bfloat16/float16 storage and in double for double storage; bf16 and
 * fp16 round to nearest even on store, like torch's conversions.
 *
 * Plain C on purpose: no torch or Python headers, so the first build takes well under a second
 * and needs only a C compiler (OpenMP optional). Built, cached and loaded by asgd_bridge/_native/,
 * called by asgd_bridge/torch/_fused.py (asgd_step) and asgd_bridge/paddle/_fused.py (asgd_update),
 * which check every pointer passed here (see _native/__init__.py).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ASGD_API __attribute__((visibility("default")))

#include "share.h" /* share_range, FOR_SHARE, SHARE_PAR_MIN */

enum { DT_F32 = 0, DT_F64 = 1, DT_BF16 = 2, DT_F16 = 3 };

static inline float bf16_load(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t bf16_store(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    /* c10::BFloat16's round_to_nearest_even, NaN to the canonical quiet NaN. */
    uint16_t r = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return f != f ? (uint16_t)0x7fc0 : r;
}

/* Per-tensor scalars of this step, computed once on the host side of the kernel. */
typedef struct {
    double keep;  /* 1 - lambd * eta */
    double eta;
    double mu;
    int copy;     /* mu == 1: ax becomes a copy of p */
} asgd_scalars;

#define ASGD_LOOP(STORAGE, T, LOAD, STORE, WD, COPY)                                        \
    do {                                                                                    \
        _Pragma("omp simd")                                                                 \
        for (int64_t i = b; i < e; ++i) {                                                   \
            T pv = LOAD(p[i]);                                                              \
            T gv = sign * LOAD(g[i]);                                                       \
            if (WD) gv = gv + wd * pv;                                                      \
            STORAGE ps = STORE(pv * keep - eta * gv);                                       \
            p[i] = ps;                                                                      \
            if (COPY) {                                                                     \
                ax[i] = ps;                                                                 \
            } else {                                                                        \
                T av = LOAD(ax[i]);                                                         \
                ax[i] = STORE(av + mu * (LOAD(ps) - av));                                   \
            }                                                                               \
        }                                                                                   \
    } while (0)

#define ASGD_IDENT(x) (x)

#define ASGD_DEFINE(NAME, STORAGE, T, LOAD, STORE)                                          \
    static void NAME(int64_t n, void *const *P, void *const *G, void *const *AX,            \
                     const int64_t *numel, const asgd_scalars *s, double weight_decay,      \
                     int maximize, int nthreads, int parallel) {                            \
        const T sign = maximize ? (T)-1 : (T)1;                                             \
        const T wd = (T)weight_decay;                                                       \
        const int has_wd = weight_decay != 0.0;                                             \
        int64_t total = 0;                                                                  \
        for (int64_t k = 0; k < n; ++k) total += numel[k];                                  \
        _Pragma("omp parallel num_threads(nthreads) if(parallel)")                          \
        {                                                                                   \
        FOR_SHARE(n, numel, total) {                                                   \
            STORAGE *restrict p = (STORAGE *)P[k];                                          \
            const STORAGE *restrict g = (const STORAGE *)G[k];                              \
            STORAGE *restrict ax = (STORAGE *)AX[k];                                        \
            const T keep = (T)s[k].keep, eta = (T)s[k].eta, mu = (T)s[k].mu;                \
            if (has_wd) {                                                                   \
                if (s[k].copy) ASGD_LOOP(STORAGE, T, LOAD, STORE, 1, 1);                    \
                else ASGD_LOOP(STORAGE, T, LOAD, STORE, 1, 0);                              \
            } else {                                                                        \
                if (s[k].copy) ASGD_LOOP(STORAGE, T, LOAD, STORE, 0, 1);                    \
                else ASGD_LOOP(STORAGE, T, LOAD, STORE, 0, 0);                              \
            }                                                                               \
        }                                                                                   \
        }                                                                                   \
    }

ASGD_DEFINE(asgd_f32, float, float, ASGD_IDENT, ASGD_IDENT)
ASGD_DEFINE(asgd_f64, double, double, ASGD_IDENT, ASGD_IDENT)
ASGD_DEFINE(asgd_bf16, uint16_t, float, bf16_load, bf16_store)

#if defined(__FLT16_MAX__)
#define ASGD_HAS_F16 1
#define ASGD_F16_LOAD(x) ((float)(x))
#define ASGD_F16_STORE(x) ((_Float16)(x))
ASGD_DEFINE(asgd_f16, _Float16, float, ASGD_F16_LOAD, ASGD_F16_STORE)
#else
#define ASGD_HAS_F16 0
#endif

/* Which storage dtypes this build supports, as a bit mask of 1 << DT_*. */
ASGD_API int asgd_dtypes(void) {
    return (1 << DT_F32) | (1 << DT_F64) | (1 << DT_BF16) | (ASGD_HAS_F16 << DT_F16);
}

static inline double state_load(const void *ptr, int scalar_f64) {
    return scalar_f64 ? *(const double *)ptr : (double)*(const float *)ptr;
}

static inline void state_store(void *ptr, int scalar_f64, double v) {
    if (scalar_f64) *(double *)ptr = v;
    else *(float *)ptr = (float)v;
}

/* One step over n tensors of one storage dtype. STEP/ETA/MU point at each tensor's 0-d state
 * (float32, or float64 when scalar_f64), read and updated here. Returns 0, or -1 on a bad dtype
 * or allocation failure (nothing is modified then). */
ASGD_API int asgd_step(int dtype, int64_t n, void *const *P, void *const *G, void *const *AX,
                       const int64_t *numel, void *const *STEP, void *const *ETA, void *const *MU,
                       int scalar_f64, double lr, double lambd, double alpha, double t0,
                       double weight_decay, int maximize, int immediate_lr, int bottou_average,
                       int nthreads) {
    if (n <= 0) return 0;
    if (!((asgd_dtypes() >> dtype) & 1)) return -1;
    asgd_scalars *s = (asgd_scalars *)malloc((size_t)n * sizeof *s);
    if (!s) return -1;
    int64_t total = 0;
    for (int64_t k = 0; k < n; ++k) {
        /* The state's own precision for t, like torch's `step_t += 1` on a float32 tensor. */
        double t = state_load(STEP[k], scalar_f64) + 1.0;
        if (!scalar_f64) t = (double)(float)t;
        double eta = immediate_lr ? lr / pow(1.0 + lambd * lr * (t - 1.0), alpha)
                                  : state_load(ETA[k], scalar_f64);
        double mu = bottou_average ? 1.0 / fmax(1.0, t - t0) : state_load(MU[k], scalar_f64);
        s[k].keep = 1.0 - lambd * eta;
        s[k].eta = eta;
        s[k].mu = mu;
        s[k].copy = mu == 1.0;
        total += numel[k];
        state_store(STEP[k], scalar_f64, t);
        state_store(ETA[k], scalar_f64, lr / pow(1.0 + lambd * lr * t, alpha));
        state_store(MU[k], scalar_f64, 1.0 / fmax(1.0, t - t0));
    }
    const int parallel = nthreads > 1 && total >= SHARE_PAR_MIN;
    if (nthreads < 1) nthreads = 1;
    switch (dtype) {
        case DT_F32: asgd_f32(n, P, G, AX, numel, s, weight_decay, maximize, nthreads, parallel); break;
        case DT_F64: asgd_f64(n, P, G, AX, numel, s, weight_decay, maximize, nthreads, parallel); break;
        case DT_BF16: asgd_bf16(n, P, G, AX, numel, s, weight_decay, maximize, nthreads, parallel); break;
#if ASGD_HAS_F16
        case DT_F16: asgd_f16(n, P, G, AX, numel, s, weight_decay, maximize, nthreads, parallel); break;
#endif
        default: break;
    }
    free(s);
    return 0;
}

/* ------------------------------------------------------------------ host-scheduled variant
 *
 * For callers that keep step/eta/mu on the host (asgd_bridge/paddle/_fused.py: Paddle's ASGD holds
 * them as Python numbers, so a step never reads a tensor back). Per tensor k the caller passes
 *
 *     decay = 1 - lambd * eta - eta * weight_decay,   eta (negated under maximize),   mu
 *
 * and the kernel computes, in float (double for double storage), x being the weight:
 *
 *     x  = decay * x - eta * g
 *     p  = x rounded to the storage dtype;  W = x (fp32 master weight, when given)
 *     ax = mu == 1 ? p : ax + mu * (x - ax)      (averaged from x, the unrounded new weight)
 *
 * which is asgd_bridge.paddle.ASGD's non-fused update in one pass. grad is of the storage dtype or
 * float32 (a bf16/fp16 gradient Paddle already cast); W, when not NULL, is a float32 master weight
 * read instead of p (multi_precision): bf16 with master and fp32 grad reads 10 B and writes 8 B per
 * element.
 */

#define MIX_LOOP(PS, GS, T, LOADP, STOREP, LOADG, MASTER, COPY)                             \
    do {                                                                                    \
        _Pragma("omp simd")                                                                 \
        for (int64_t i = b; i < e; ++i) {                                                   \
            T x = MASTER ? (T)w[i] : LOADP(p[i]);                                           \
            T nv = x * decay - eta * LOADG(g[i]);                                           \
            PS ps = STOREP(nv);                                                             \
            p[i] = ps;                                                                      \
            if (MASTER) w[i] = (float)nv;                                                   \
            if (COPY) {                                                                     \
                ax[i] = ps;                                                                 \
            } else {                                                                        \
                T av = LOADP(ax[i]);                                                        \
                ax[i] = STOREP(av + mu * (nv - av));                                        \
            }                                                                               \
        }                                                                                   \
    } while (0)

#define MIX_DEFINE(NAME, PS, GS, T, LOADP, STOREP, LOADG, MASTER)                           \
    static void NAME(int64_t n, void *const *P, void *const *G, void *const *AX,            \
                     void *const *W, const int64_t *numel, const double *DECAY,             \
                     const double *ETA, const double *MU, int nthreads, int parallel) {     \
        int64_t total = 0;                                                                  \
        for (int64_t k = 0; k < n; ++k) total += numel[k];                                  \
        _Pragma("omp parallel num_threads(nthreads) if(parallel)")                          \
        {                                                                                   \
        FOR_SHARE(n, numel, total) {                                                   \
            PS *restrict p = (PS *)P[k];                                                    \
            const GS *restrict g = (const GS *)G[k];                                        \
            PS *restrict ax = (PS *)AX[k];                                                  \
            float *restrict w = MASTER ? (float *)W[k] : (float *)0;                        \
            const T decay = (T)DECAY[k], eta = (T)ETA[k], mu = (T)MU[k];                    \
            (void)w;                                                                        \
            if (MU[k] == 1.0) MIX_LOOP(PS, GS, T, LOADP, STOREP, LOADG, MASTER, 1);         \
            else MIX_LOOP(PS, GS, T, LOADP, STOREP, LOADG, MASTER, 0);                      \
        }                                                                                   \
        }                                                                                   \
    }

MIX_DEFINE(mix_f32, float, float, float, ASGD_IDENT, ASGD_IDENT, ASGD_IDENT, 0)
MIX_DEFINE(mix_f64, double, double, double, ASGD_IDENT, ASGD_IDENT, ASGD_IDENT, 0)
MIX_DEFINE(mix_bf16, uint16_t, uint16_t, float, bf16_load, bf16_store, bf16_load, 0)
MIX_DEFINE(mix_bf16_g32, uint16_t, float, float, bf16_load, bf16_store, ASGD_IDENT, 0)
MIX_DEFINE(mix_bf16_w, uint16_t, uint16_t, float, bf16_load, bf16_store, bf16_load, 1)
MIX_DEFINE(mix_bf16_g32_w, uint16_t, float, float, bf16_load, bf16_store, ASGD_IDENT, 1)
#if ASGD_HAS_F16
MIX_DEFINE(mix_f16, _Float16, _Float16, float, ASGD_F16_LOAD, ASGD_F16_STORE, ASGD_F16_LOAD, 0)
MIX_DEFINE(mix_f16_g32, _Float16, float, float, ASGD_F16_LOAD, ASGD_F16_STORE, ASGD_IDENT, 0)
MIX_DEFINE(mix_f16_w, _Float16, _Float16, float, ASGD_F16_LOAD, ASGD_F16_STORE, ASGD_F16_LOAD, 1)
MIX_DEFINE(mix_f16_g32_w, _Float16, float, float, ASGD_F16_LOAD, ASGD_F16_STORE, ASGD_IDENT, 1)
#endif

/* One step over n tensors of storage dtype `dtype` with host-computed scalars (see above).
 * grad_f32: the gradients are float32 (else of the storage dtype); W: float32 master weights, or
 * NULL. A master weight or a float32 gradient is taken for bfloat16/float16 storage only. Returns 0,
 * or -1 for a combination this build does not have (nothing is modified then). */
ASGD_API int asgd_update(int dtype, int grad_f32, int64_t n, void *const *P, void *const *G,
                         void *const *AX, void *const *W, const int64_t *numel, const double *DECAY,
                         const double *ETA, const double *MU, int nthreads) {
    if (n <= 0) return 0;
    if (!((asgd_dtypes() >> dtype) & 1)) return -1;
    const int low = dtype == DT_BF16 || dtype == DT_F16;
    if (!low && (grad_f32 || W)) return -1;
    int64_t total = 0;
    for (int64_t k = 0; k < n; ++k) total += numel[k];
    const int parallel = nthreads > 1 && total >= SHARE_PAR_MIN;
    if (nthreads < 1) nthreads = 1;
    const int v = (grad_f32 ? 1 : 0) | (W ? 2 : 0);
#define MIX_CALL(F) F(n, P, G, AX, W, numel, DECAY, ETA, MU, nthreads, parallel)
    switch (dtype) {
        case DT_F32: MIX_CALL(mix_f32); break;
        case DT_F64: MIX_CALL(mix_f64); break;
        case DT_BF16:
            if (v == 0) MIX_CALL(mix_bf16);
            else if (v == 1) MIX_CALL(mix_bf16_g32);
            else if (v == 2) MIX_CALL(mix_bf16_w);
            else MIX_CALL(mix_bf16_g32_w);
            break;
#if ASGD_HAS_F16
        case DT_F16:
            if (v == 0) MIX_CALL(mix_f16);
            else if (v == 1) MIX_CALL(mix_f16_g32);
            else if (v == 2) MIX_CALL(mix_f16_w);
            else MIX_CALL(mix_f16_g32_w);
            break;
#endif
        default: return -1;
    }
#undef MIX_CALL
    return 0;
}
