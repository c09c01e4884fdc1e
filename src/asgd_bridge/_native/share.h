/* The work split shared by the kernels of asgd_bridge/_native (asgd_cpu.c, sag_cpu.c).
 *
 * A call updates n tensors; their elements are counted as one concatenated index space of `total`
 * elements, split statically into one contiguous share per OpenMP thread (cut at 16-element
 * boundaries, so no two threads write one cache line). Many small tensors then cost one parallel
 * region and no per-tensor work-sharing, and a big tensor is split evenly.
 *
 * The builder (build.py) compiles with -I on this directory and hashes every header here into the
 * cache key, so a change to this file rebuilds every kernel that includes it.
 */
#ifndef ASGD_BRIDGE_SHARE_H
#define ASGD_BRIDGE_SHARE_H

#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* This thread's share [*lo, *hi) of `total` elements. */
static inline void share_range(int64_t total, int64_t *lo, int64_t *hi) {
#ifdef _OPENMP
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
    const int64_t t = 0, nt = 1;
#endif
    *lo = t == 0 ? 0 : (total * t / nt) & ~(int64_t)15;
    *hi = t + 1 == nt ? total : (total * (t + 1) / nt) & ~(int64_t)15;
}

/* For k over the tensors, with [b, e) the part of tensor k in this thread's share. */
#define FOR_SHARE(n, numel, total)                                                          \
    int64_t share_lo_, share_hi_, share_base_ = 0;                                          \
    share_range(total, &share_lo_, &share_hi_);                                             \
    for (int64_t k = 0; k < (n) && share_base_ < share_hi_; share_base_ += (numel)[k], ++k) \
        for (int64_t b = share_lo_ > share_base_ ? share_lo_ - share_base_ : 0,             \
                     e = share_hi_ - share_base_ < (numel)[k] ? share_hi_ - share_base_ : (numel)[k]; \
             b < e; b = e)

/* Below this many elements in one call, threads cost more than they save. */
#define SHARE_PAR_MIN 32768

#endif
