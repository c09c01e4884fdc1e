/* One-pass SAG step (paddle.optimizer.ASGD's algorithm) over a list of CPU tensors.
 *
 * The math is reference.sag_step after reference.prepare_gradients (src/asgd_bridge/reference.py),
 * per tensor k with i = m % n and count = min(m + 1, n) chosen by the caller (Y[k] is row i of y):
 *
 *     g    = maximize ? -grad : grad                        (1. negate)
 *     g    = clamp(g, lo, hi)          (value clip)         (2. clip)
 *     g    = g * scale                 (norm / global-norm clip: the scale, computed by the caller
 *                                       from the norms, read here from a 1-element tensor)
 *     g    = g + coeff * p  (L2)  |  g + coeff * sign(p)  (L1)   (3. regularise)
 *     d    = d - y[i] + g;   y[i] = g
 *     p    = p + step * d              (step = -lr / count)
 *
 * Each element of p, grad, d and y[i] is read once and p, d and y[i] written once: 28 bytes per
 * fp32 element, the floor of this update (SGD's is 12). float32 and float64 storage, arithmetic in
 * the storage type, rounding in the order above (as the framework ops round, up to the FMA
 * contraction of p + step * d and g + coeff * p).
 *
 * Plain C, built, cached and loaded by asgd_bridge/_native/ like asgd_cpu.c; called by
 * asgd_bridge/torch/_sag_fused.py and asgd_bridge/paddle/_fused.py, which check every pointer
 * passed here (see _native/__init__.py).
 */
#include <stdint.h>

#define SAG_API __attribute__((visibility("default")))

#include "share.h" /* share_range, FOR_SHARE, SHARE_PAR_MIN */

enum { DT_F32 = 0, DT_F64 = 1 };
enum { REG_NONE = 0, REG_L2 = 1, REG_L1 = 2 };

#define SAG_LOOP(T, CLIPV, REG)                                                             \
    do {                                                                                    \
        _Pragma("omp simd")                                                                 \
        for (int64_t i = b; i < e; ++i) {                                                   \
            const T x = p[i];                                                               \
            T gv = sign * g[i];                                                             \
            if (CLIPV) {                                                                    \
                gv = gv < lo ? lo : gv;                                                     \
                gv = gv > hi ? hi : gv;                                                     \
            }                                                                               \
            gv = gv * scale;                                                                \
            if (REG == REG_L2) gv = gv + coeff * x;                                         \
            if (REG == REG_L1) gv = gv + coeff * (x > 0 ? (T)1 : x < 0 ? (T)-1 : x);        \
            const T dv = (d[i] - y[i]) + gv;                                                \
            y[i] = gv;                                                                      \
            d[i] = dv;                                                                      \
            p[i] = x + step * dv;                                                           \
        }                                                                                   \
    } while (0)

#define SAG_DEFINE(NAME, T)                                                                 \
    static void NAME(int64_t n, void *const *P, void *const *G, void *const *D,             \
                     void *const *Y, const int64_t *numel, const double *STEP,              \
                     void *const *SCALE, int scale_f64, int maximize, int clip_value,       \
                     double lo_, double hi_, int reg, double coeff_, int nthreads,          \
                     int parallel) {                                                        \
        const T sign = maximize ? (T)-1 : (T)1;                                             \
        const T lo = (T)lo_, hi = (T)hi_, coeff = (T)coeff_;                                \
        int64_t total = 0;                                                                  \
        for (int64_t k = 0; k < n; ++k) total += numel[k];                                  \
        _Pragma("omp parallel num_threads(nthreads) if(parallel)")                          \
        {                                                                                   \
        FOR_SHARE(n, numel, total) {                                                    \
            T *restrict p = (T *)P[k];                                                      \
            const T *restrict g = (const T *)G[k];                                          \
            T *restrict d = (T *)D[k];                                                      \
            T *restrict y = (T *)Y[k];                                                      \
            const T step = (T)STEP[k];                                                      \
            const T scale = SCALE[k] == 0 ? (T)1                                            \
                            : scale_f64 ? (T)*(const double *)SCALE[k]                      \
                                        : (T)*(const float *)SCALE[k];                      \
            if (clip_value) {                                                               \
                if (reg == REG_L2) SAG_LOOP(T, 1, REG_L2);                                  \
                else if (reg == REG_L1) SAG_LOOP(T, 1, REG_L1);                             \
                else SAG_LOOP(T, 1, REG_NONE);                                              \
            } else {                                                                        \
                if (reg == REG_L2) SAG_LOOP(T, 0, REG_L2);                                  \
                else if (reg == REG_L1) SAG_LOOP(T, 0, REG_L1);                             \
                else SAG_LOOP(T, 0, REG_NONE);                                              \
            }                                                                               \
        }                                                                                   \
        }                                                                                   \
    }

SAG_DEFINE(sag_f32, float)
SAG_DEFINE(sag_f64, double)

/* Which storage dtypes this build supports, as a bit mask of 1 << DT_*. */
SAG_API int sag_dtypes(void) { return (1 << DT_F32) | (1 << DT_F64); }

/* One step over n tensors of one storage dtype. SCALE[k] points at one float32 (float64 if
 * scale_f64) clip scale, or is NULL (no norm clip). Returns 0, or -1 on a bad dtype or
 * regulariser kind (nothing is modified then). */
SAG_API int sag_step(int dtype, int64_t n, void *const *P, void *const *G, void *const *D,
                     void *const *Y, const int64_t *numel, const double *STEP, void *const *SCALE,
                     int scale_f64, int maximize, int clip_value, double lo, double hi, int reg,
                     double coeff, int nthreads) {
    if (n <= 0) return 0;
    if (!((sag_dtypes() >> dtype) & 1) || reg < REG_NONE || reg > REG_L1) return -1;
    int64_t total = 0;
    for (int64_t k = 0; k < n; ++k) total += numel[k];
    const int parallel = nthreads > 1 && total >= SHARE_PAR_MIN;
    if (nthreads < 1) nthreads = 1;
    if (dtype == DT_F32)
        sag_f32(n, P, G, D, Y, numel, STEP, SCALE, scale_f64, maximize, clip_value, lo, hi, reg, coeff,
                nthreads, parallel);
    else
        sag_f64(n, P, G, D, Y, numel, STEP, SCALE, scale_f64, maximize, clip_value, lo, hi, reg, coeff,
                nthreads, parallel);
    return 0;
}
