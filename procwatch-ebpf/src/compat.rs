//! 32-bit syscalls (`int 0x80`, ia32 emulation) made by any process, 64-bit ones included.
//! The per-syscall tracepoints never fire for them, so one raw `sys_enter` program sees every
//! syscall and handles the ia32 ones procwatch judges, with the same handlers (and kill
//! policy) as the 64-bit tracepoints.
//!
//! It runs for every syscall on the machine (config `sensor.ia32: off` leaves it out), so the
//! fast path is one comparison of the syscall number against the handled ia32 numbers; only a match reads the task's
//! `TS_COMPAT` status (the number alone is ambiguous: 125 is mprotect on ia32 but capget on
//! x86_64).
use aya_ebpf::{
    helpers::bpf_probe_read_user, macros::raw_tracepoint, programs::RawTracePointContext,
};
use procwatch_common::{AT_FDCWD, config, flags, ko, open_call, via, wx_syscall};

use crate::{connect, file_open, inject, memfd, offsets, process, ptrace, task, wx_mem};

/// `TS_COMPAT` (arch/x86/include/asm/thread_info.h): the task is in a 32-bit syscall.
const TS_COMPAT: u32 = 0x0002;

/// ia32 syscall numbers (arch/x86/entry/syscalls/syscall_32.tbl).
mod nr {
    pub const OPEN: u64 = 5;
    pub const EXECVE: u64 = 11;
    pub const PTRACE: u64 = 26;
    pub const OLD_MMAP: u64 = 90;
    pub const SOCKETCALL: u64 = 102;
    pub const MPROTECT: u64 = 125;
    pub const MMAP2: u64 = 192;
    pub const SENDMMSG: u64 = 345;
    pub const PROCESS_VM_WRITEV: u64 = 348;
    pub const MEMFD_CREATE: u64 = 356;
    pub const EXECVEAT: u64 = 358;
    pub const CONNECT: u64 = 362;
    pub const SENDTO: u64 = 369;
    pub const SENDMSG: u64 = 370;
    pub const OPENAT: u64 = 295;
    pub const PKEY_MPROTECT: u64 = 380;
    pub const OPENAT2: u64 = 437;
}

/// socketcall(2) call numbers (uapi net.h).
mod call {
    pub const CONNECT: u32 = 3;
    pub const SENDTO: u32 = 11;
    pub const SENDMSG: u32 = 16;
    pub const SENDMMSG: u32 = 20;
}

/// `sizeof(struct compat_mmsghdr)`: a 28-byte `compat_msghdr` and `msg_len`.
const COMPAT_MMSGHDR_SIZE: u64 = 32;

/// Messages of one ia32 `sendmmsg` looked at (as for the 64-bit one).
const MMSG_MAX: u64 = 8;

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn raw_sys_enter(ctx: RawTracePointContext) -> i32 {
    // sys_enter(struct pt_regs *regs, long id)
    let id: u64 = ctx.arg(1);
    if !matches!(
        id,
        nr::EXECVE
            | nr::PTRACE
            | nr::OLD_MMAP
            | nr::SOCKETCALL
            | nr::MPROTECT
            | nr::MMAP2
            | nr::SENDMMSG
            | nr::PROCESS_VM_WRITEV
            | nr::MEMFD_CREATE
            | nr::EXECVEAT
            | nr::CONNECT
            | nr::SENDTO
            | nr::SENDMSG
            | nr::PKEY_MPROTECT
            | nr::OPEN
            | nr::OPENAT
            | nr::OPENAT2
    ) {
        return 0;
    }
    if !offsets::kernel_known() || !in_compat_syscall() {
        return 0;
    }
    let regs: *const u8 = ctx.arg(0);
    let _ = handle(id, &Regs(regs));
    0
}

/// The exits the ia32 entry needs: a killed `PTRACE_ATTACH` (which task it really stopped,
/// for the SIGCONT) and opens (a `/proc/PID/mem` opened for writing), as the 64-bit
/// `sys_exit_*` tracepoints do for 64-bit calls.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn raw_sys_exit(ctx: RawTracePointContext) -> i32 {
    // sys_exit(struct pt_regs *regs, long ret): the number is still in orig_ax.
    let regs: *const u8 = ctx.arg(0);
    let Some(id) = task::read::<u64>(regs, offsets::ko(ko::REGS_ORIG_AX)) else {
        return 0;
    };
    let id = id & 0xffff_ffff;
    if !matches!(id, nr::PTRACE | nr::OPEN | nr::OPENAT | nr::OPENAT2) {
        return 0;
    }
    // TS_COMPAT is cleared only on the way back to user space, after this tracepoint.
    if !offsets::kernel_known() || !in_compat_syscall() {
        return 0;
    }
    let ret: i64 = ctx.arg(1);
    if id == nr::PTRACE {
        ptrace::on_ptrace_exit(ret);
    } else if ret >= 0 {
        let _ = inject::check_mem_open(ret as u64, flags::COMPAT);
    }
    0
}

#[inline(always)]
fn in_compat_syscall() -> bool {
    task::read::<u32>(task::current(), offsets::ko(ko::TASK_TI_STATUS))
        .is_some_and(|s| s & TS_COMPAT != 0)
}

/// The saved user registers: an ia32 syscall's arguments are ebx, ecx, edx, esi, edi, ebp.
struct Regs(*const u8);

impl Regs {
    /// Argument `n` (0-based), zero-extended from 32 bits.
    #[inline(always)]
    fn arg(&self, n: usize) -> Option<u64> {
        let slot = match n {
            0 => ko::REGS_BX,
            1 => ko::REGS_CX,
            2 => ko::REGS_DX,
            3 => ko::REGS_SI,
            4 => ko::REGS_DI,
            _ => ko::REGS_BP,
        };
        task::read::<u64>(self.0, offsets::ko(slot)).map(|v| v & 0xffff_ffff)
    }
}

/// A 32-bit user pointer as a pointer.
#[inline(always)]
fn ptr(v: u64) -> *const u8 {
    v as usize as *const u8
}

/// The `i`th `u32` of a user array (socketcall's arguments, old mmap's struct).
#[inline(always)]
fn user_u32(base: u64, i: u64) -> Option<u64> {
    // SAFETY: fault-tolerant user read.
    unsafe { bpf_probe_read_user(ptr(base + 4 * i).cast::<u32>()) }
        .ok()
        .map(u64::from)
}

#[inline(always)]
fn handle(id: u64, r: &Regs) -> Option<()> {
    let c = flags::COMPAT;
    match id {
        nr::PTRACE => ptrace::on_ptrace(r.arg(0)?, r.arg(1)?, c, config::IA32_EXIT_ON),
        // open(filename, flags, mode)
        nr::OPEN => {
            let name = ptr(r.arg(0)?);
            let _ = file_open::on_open(open_call::OPEN, i64::from(AT_FDCWD), name, r.arg(1)?, c);
        }
        // openat(dfd, filename, flags, mode); the dfd is a 32-bit int
        nr::OPENAT => {
            let dfd = i64::from(r.arg(0)? as u32 as i32);
            let _ = file_open::on_open(open_call::OPENAT, dfd, ptr(r.arg(1)?), r.arg(2)?, c);
        }
        // openat2(dfd, filename, how, size): the flags sit in user memory
        nr::OPENAT2 => {
            let dfd = i64::from(r.arg(0)? as u32 as i32);
            let _ = file_open::on_open(open_call::OPENAT2, dfd, ptr(r.arg(1)?), 0, c);
        }
        nr::MPROTECT => wx(
            wx_syscall::MPROTECT,
            r.arg(0)?,
            r.arg(1)?,
            r.arg(2)?,
            0,
            None,
        ),
        nr::PKEY_MPROTECT => wx(
            wx_syscall::PKEY_MPROTECT,
            r.arg(0)?,
            r.arg(1)?,
            r.arg(2)?,
            r.arg(3)?,
            None,
        ),
        // mmap2(addr, len, prot, flags, fd, pgoff)
        nr::MMAP2 => wx(
            wx_syscall::MMAP2,
            r.arg(0)?,
            r.arg(1)?,
            r.arg(2)?,
            r.arg(3)?,
            Some(r.arg(4)?),
        ),
        // old_mmap(struct mmap_arg_struct { addr, len, prot, flags, fd, offset } *)
        nr::OLD_MMAP => {
            let a = r.arg(0)?;
            wx(
                wx_syscall::OLD_MMAP,
                user_u32(a, 0)?,
                user_u32(a, 1)?,
                user_u32(a, 2)?,
                user_u32(a, 3)?,
                Some(user_u32(a, 4)?),
            )
        }
        nr::EXECVE => {
            let _ = process::capture_args(r.arg(1)?, true);
        }
        // execveat(dfd, filename, argv, envp, flags)
        nr::EXECVEAT => {
            let _ = process::capture_args(r.arg(2)?, true);
        }
        nr::CONNECT => {
            let _ = connect::report(r.arg(0)?, ptr(r.arg(1)?), r.arg(2)?, via::CONNECT, c);
        }
        nr::SENDTO => sendto(r.arg(0)?, r.arg(3)?, r.arg(4)?, r.arg(5)?),
        nr::SENDMSG => msghdr(r.arg(0)?, r.arg(1)?, via::SENDMSG, r.arg(2)?),
        nr::SENDMMSG => mmsghdr(r.arg(0)?, r.arg(1)?, r.arg(2)?, r.arg(3)?),
        nr::PROCESS_VM_WRITEV => inject::process_vm_writev(r.arg(0)?, c),
        nr::MEMFD_CREATE => memfd::on_memfd(ptr(r.arg(0)?), r.arg(1)?, c),
        nr::SOCKETCALL => socketcall(r.arg(0)? as u32, r.arg(1)?)?,
        _ => {}
    }
    Some(())
}

#[inline(always)]
fn wx(syscall: u32, start: u64, len: u64, prot: u64, extra: u64, fd: Option<u64>) {
    wx_mem::on_wx(syscall, start, len, prot, extra, fd, flags::COMPAT);
}

/// socketcall(call, u32 args[]): the multiplexer old 32-bit libcs use for every socket call.
#[inline(always)]
fn socketcall(which: u32, args: u64) -> Option<()> {
    match which {
        call::CONNECT => {
            let _ = connect::report(
                user_u32(args, 0)?,
                ptr(user_u32(args, 1)?),
                user_u32(args, 2)?,
                via::CONNECT,
                flags::COMPAT,
            );
        }
        // sendto(fd, buf, len, flags, addr, addrlen)
        call::SENDTO => sendto(
            user_u32(args, 0)?,
            user_u32(args, 3)?,
            user_u32(args, 4)?,
            user_u32(args, 5)?,
        ),
        call::SENDMSG => msghdr(
            user_u32(args, 0)?,
            user_u32(args, 1)?,
            via::SENDMSG,
            user_u32(args, 2)?,
        ),
        call::SENDMMSG => mmsghdr(
            user_u32(args, 0)?,
            user_u32(args, 1)?,
            user_u32(args, 2)?,
            user_u32(args, 3)?,
        ),
        _ => {}
    }
    Some(())
}

#[inline(always)]
fn fastopen(send_flags: u64) -> u32 {
    flags::COMPAT | connect::fastopen(send_flags)
}

#[inline(always)]
fn sendto(fd: u64, send_flags: u64, addr: u64, addrlen: u64) {
    if addr != 0 {
        let _ = connect::report(fd, ptr(addr), addrlen, via::SENDTO, fastopen(send_flags));
    }
}

/// A `compat_msghdr`: `msg_name` (u32) at 0, `msg_namelen` at 4.
#[inline(always)]
fn msghdr(fd: u64, msg: u64, how: u32, send_flags: u64) {
    let Some(name) = user_u32(msg, 0) else {
        return;
    };
    if name == 0 {
        return;
    }
    let Some(namelen) = user_u32(msg, 1) else {
        return;
    };
    let _ = connect::report(fd, ptr(name), namelen, how, fastopen(send_flags));
}

#[inline(always)]
fn mmsghdr(fd: u64, mmsg: u64, vlen: u64, send_flags: u64) {
    let mut i = 0u64;
    while i < MMSG_MAX && i < vlen {
        msghdr(
            fd,
            mmsg + i * COMPAT_MMSGHDR_SIZE,
            via::SENDMMSG,
            send_flags,
        );
        i += 1;
    }
}
