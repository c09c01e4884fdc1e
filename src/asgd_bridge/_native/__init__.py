"""Native kernels: build, cache, load, and the contract their callers check inputs against.

One home for every native kernel of the project: the averaged-SGD CPU kernel ``asgd_cpu.c``
(:mod:`.asgd`), the SAG CPU kernel ``sag_cpu.c`` (:mod:`.sag`), and the benchmarks' STREAM probe
built the same way. Framework-neutral: nothing here imports torch or Paddle; the framework callers
(``asgd_bridge.torch._fused`` and ``asgd_bridge.torch._sag_fused``, ``asgd_bridge.paddle._fused``
for both Paddle classes) turn their tensors into addresses after checking them.

Trust model
-----------
Native code runs with the user's rights and reads raw addresses, so two things must hold.

*The library loaded is one this process built, or one it built before and can verify.*

* The cache is ``$TORCH_EXTENSIONS_DIR/asgd_bridge``, else ``~/.cache/torch_extensions/asgd_bridge``
  (torch's extension cache), created with mode 0700. It is used only if it is a real directory
  (not a symlink) owned by the effective uid, not writable by group or others, and each of its
  ancestors is owned by root or the uid and not writable by others unless sticky (``/tmp``). Then
  only this uid (or root) can add, replace or rename anything in it: these checks are what make a
  cached file trustworthy, since any writer other than ourselves is excluded.
* Otherwise (a shared 1777 directory, one owned by someone else, one that cannot be created or
  written, no ``$HOME``) nothing is loaded from it: the library is built into a fresh
  ``mkdtemp`` directory of this process (mode 0700, unguessable name, removed at exit), with one
  ``RuntimeWarning`` naming the directory and the reason. If even that fails, the caller falls
  back to its pure-framework path (one warning), never an exception from ``step()``.
* A cached library ``<name>_<key>`` is found through ``<name>_<key>.sha256``, which records the
  sha256 of the library file ``<name>_<key>_<sha256[:16]>.so``. ``key`` hashes the source, the
  headers beside it (``share.h``: the work split both kernels include), the compiler command, the
  flags and the CPU model, so a changed input is a new entry. Both files
  must be regular files (opened without following symlinks) owned by the uid and not writable by
  group or others, and the library's bytes, read from the same file descriptor that is then
  loaded (``/proc/self/fd/N``, so no one can swap the file between the check and ``dlopen``),
  must hash to the record. The hash guards against a torn or stale file and keeps concurrent
  builders consistent; it is not what keeps others out (anyone who can write the record can write
  the library), the ownership and mode checks are.
* ``$CC`` is split as a shell would (``CC="ccache gcc"``) and run without a shell.

*The kernel sees only addresses its caller checked.* A kernel cannot validate a pointer, so each
caller proves before every launch what the kernel's docstring requires (for
:func:`~asgd_bridge._native.asgd.asgd_step`: dense buffers of the stated element count and dtype,
laid out alike, in host memory). ``asgd_bridge.torch._fused`` does this per tensor per step with
attribute reads only (a few microseconds per tensor): plain ``torch.Tensor``/``Parameter``
(DTensors are unwrapped to their local shard and checked the same way), strided, not meta, one
storage dtype per launch (complex counted as twice as many real elements), equal numel, dtype,
device and strides for ``p``, ``grad`` and ``ax``, 1-element CPU float scalars for the schedule.
A numel mismatch raises naming the parameter; a layout the kernel does not take goes to the
foreach path. ``asgd_bridge.torch._sag_fused`` checks the same per tensor (plus ``d``, the whole
``y`` and the clip scale). ``asgd_bridge.paddle._fused`` checks each Paddle tensor the same way
(plain ``paddle.Tensor``/parameter, CPU place, dense and initialised -- not SelectedRows, not
distributed --, dtype, element count, contiguous; ``data_ptr()`` includes a view's offset) and
that no two buffers of a launch overlap; whatever fails goes to Paddle's ops with one warning.
"""

from .build import BuildInfo, NativeUnavailable, build_shared_library, cache_dir, compile_to, compiler

__all__ = ["BuildInfo", "NativeUnavailable", "build_shared_library", "cache_dir", "compile_to", "compiler"]
