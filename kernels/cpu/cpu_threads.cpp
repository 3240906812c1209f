#include "cpu_threads.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

namespace engine {
namespace {

// The file's first line, or "" where it cannot be read.
std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

std::vector<int> parse_cpu_list(const std::string& text) {
  std::vector<int> cpus;
  std::stringstream items(text);
  for (std::string item; std::getline(items, item, ',');) {
    if (item.empty() || item.find_first_not_of("0123456789-\n ") != std::string::npos) return {};
    const size_t dash = item.find('-');
    try {
      const int first = std::stoi(item.substr(0, dash));
      const int last = dash == std::string::npos ? first : std::stoi(item.substr(dash + 1));
      if (first < 0 || last < first || last - first > 1 << 16) return {};
      for (int c = first; c <= last; ++c) cpus.push_back(c);
    } catch (const std::exception&) {
      return {};
    }
  }
  return cpus;
}

int default_thread_count(const std::string& sys, const std::vector<int>& allowed, const std::string& cpu_max) {
  std::vector<int> cpus = allowed;
  std::sort(cpus.begin(), cpus.end());
  // A hybrid Intel CPU lists its performance cores here (and its efficiency cores in cpu_atom).
  std::vector<int> performance = parse_cpu_list(first_line(sys + "/devices/cpu_core/cpus"));
  std::sort(performance.begin(), performance.end());
  std::vector<int> fast;
  std::set_intersection(cpus.begin(), cpus.end(), performance.begin(), performance.end(), std::back_inserter(fast));
  if (!fast.empty()) cpus = fast;
  std::set<std::pair<std::string, std::string>> cores;  // (package, core id)
  for (int cpu : cpus) {
    const std::string topology = sys + "/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    const std::string core = first_line(topology + "core_id");
    // Without a core id the CPU counts as a core of its own.
    cores.insert(core.empty() ? std::pair{"cpu", std::to_string(cpu)}
                              : std::pair{first_line(topology + "physical_package_id"), core});
  }
  int n = static_cast<int>(cores.size());
  // cgroup v2's "QUOTA PERIOD" (microseconds), or "max PERIOD" without a quota.
  std::istringstream quota_line(cpu_max);
  std::string quota;
  double period = 0;
  if (quota_line >> quota >> period && quota != "max" && period > 0) {
    try {
      n = std::min(n, static_cast<int>(std::ceil(std::stod(quota) / period)));
    } catch (const std::exception&) {
    }
  }
  return std::max(n, 1);
}

std::vector<int> allowed_cpus() {
  std::vector<int> allowed;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) allowed.push_back(c);
    }
  }
  if (allowed.empty()) {  // no affinity to read: every CPU the library reports
    for (unsigned c = 0; c < std::max(1u, std::thread::hardware_concurrency()); ++c) allowed.push_back(int(c));
  }
  return allowed;
}

int available_cpu_count() { return static_cast<int>(allowed_cpus().size()); }

int default_thread_count() {
  return default_thread_count("/sys", allowed_cpus(), first_line("/sys/fs/cgroup/cpu.max"));
}

}  // namespace engine
