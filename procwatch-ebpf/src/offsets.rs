//! Offsets fixed at load time: tracepoint record fields from this kernel's format files, and
//! kernel struct members from its BTF. Userspace overrides these globals before loading, so
//! the verifier sees constants (frozen `.rodata`) and no program carries a layout of its own.
use procwatch_common::{ko, tp};

/// Tracepoint field offsets, indexed by the `tp` slots; `tp::UNKNOWN` until userspace
/// sets them. Not zero-initialised, so it lands in `.rodata` (frozen, read as constants).
#[unsafe(no_mangle)]
static TP_OFFSETS: [u32; tp::COUNT] = [tp::UNKNOWN; tp::COUNT];

/// Kernel struct member offsets, indexed by the `ko` slots (see `ko::VALID`).
#[unsafe(no_mangle)]
static KERNEL_OFFSETS: [u32; ko::COUNT] = [u32::MAX; ko::COUNT];

/// The offset in tracepoint slot `slot` (a volatile read: the value is set at load time, so
/// the compiler must not fold the initialiser).
#[inline(always)]
pub fn tp(slot: usize) -> usize {
    // SAFETY: `slot` is one of the `tp` constants, all below `tp::COUNT`.
    unsafe { core::ptr::read_volatile(TP_OFFSETS.as_ptr().wrapping_add(slot)) as usize }
}

/// True when this tracepoint slot was found in the format file.
#[inline(always)]
pub fn tp_known(slot: usize) -> bool {
    tp(slot) != tp::UNKNOWN as usize
}

/// The offset in kernel-struct slot `slot`.
#[inline(always)]
pub fn ko(slot: usize) -> usize {
    // SAFETY: `slot` is one of the `ko` constants, all below `ko::COUNT`.
    unsafe { core::ptr::read_volatile(KERNEL_OFFSETS.as_ptr().wrapping_add(slot)) as usize }
}

/// True when every kernel-struct offset was read from BTF.
#[inline(always)]
pub fn kernel_known() -> bool {
    ko(ko::VALID) == 1
}
