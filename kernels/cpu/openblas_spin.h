// OpenBLAS's idle threads spin (sched_yield) for about 2^28 cycles after every call before they sleep.
// On a box where several processes share few cores (a loopback cluster, a small VM), that spinning
// steals the cores other processes need. OpenBLAS reads OPENBLAS_THREAD_TIMEOUT (2^N cycles) only when
// the library loads, so a process that wants a short spin must set it and re-execute itself.
#pragma once

namespace moe {

// When OPENBLAS_THREAD_TIMEOUT is not set: sets it to `log2_cycles` and re-executes /proc/self/exe with
// the same argv (the PID stays). Returns normally when the variable was already set (by the user or by
// the first execution) or when the re-exec fails (then the process just runs with OpenBLAS's default).
void ensure_short_openblas_spin(char** argv, int log2_cycles = 4);

}  // namespace moe
