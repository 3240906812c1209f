// How many compute threads to start by default: one per physical core this process may run on,
// as llama.cpp's default. Oversubscribing the cores costs far more than it gains here, since the
// pool's workers spin between loops (thread_pool.h).
#pragma once

#include <string>
#include <vector>

namespace engine {

// Also declared for the library's users in engine.h. The CPUs this process may run on
// (sched_getaffinity: taskset and container cpusets), the physical cores among them (SMT siblings
// counted once, by package and core id in sysfs), only the performance cores of a hybrid Intel
// CPU (sysfs devices/cpu_core), at most the CPU quota of the process's cgroup (cgroup v2 cpu.max,
// rounded up). At least 1.
int default_thread_count();

// The CPUs this process may run on (its affinity mask), SMT siblings each counted: more threads
// than this take turns on the CPUs. Also declared in engine.h.
int available_cpu_count();

// The same from a sysfs tree rooted at `sys` ("/sys"), the CPUs allowed, and a cgroup v2 cpu.max
// file (empty or missing: no quota).
int default_thread_count(const std::string& sys, const std::vector<int>& allowed, const std::string& cpu_max);

// A sysfs CPU list ("0-3,8,10-11") as CPU numbers; empty where the text is not one.
std::vector<int> parse_cpu_list(const std::string& text);

}  // namespace engine
