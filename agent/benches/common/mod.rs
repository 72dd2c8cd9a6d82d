//! Helpers shared by the benchmarks.

use std::time::Duration;

/// (user + system) CPU time of this process, and its peak RSS in KiB, from getrusage(2).
pub fn rusage() -> (Duration, i64) {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (tv(u.ru_utime) + tv(u.ru_stime), u.ru_maxrss)
}
