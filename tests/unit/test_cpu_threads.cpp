// The default thread count from fake sysfs trees: SMT siblings count once, packages apart, the
// affinity mask limits the CPUs, a hybrid CPU's performance cores are taken alone, a cgroup quota
// caps the count; and the CPU list format.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/cpu_threads.h"
#include "test_support.h"

namespace engine {
namespace {

// A sysfs tree whose CPU i has the given package and core id.
struct FakeSys {
  test::TempDir dir;
  std::string root() const { return dir.file("sys"); }
  void cpu(int i, int package, int core) const {
    const std::string topology = root() + "/devices/system/cpu/cpu" + std::to_string(i) + "/topology";
    std::filesystem::create_directories(topology);
    std::ofstream(topology + "/physical_package_id") << package << "\n";
    std::ofstream(topology + "/core_id") << core << "\n";
  }
  void performance_cores(const std::string& list) const {
    std::filesystem::create_directories(root() + "/devices/cpu_core");
    std::ofstream(root() + "/devices/cpu_core/cpus") << list << "\n";
  }
};

TEST(CpuThreads, SmtSiblingsCountOnceAndAffinityLimits) {
  FakeSys sys;
  for (int i = 0; i < 8; ++i) sys.cpu(i, 0, i / 2);  // four cores, two threads each
  EXPECT_EQ(default_thread_count(sys.root(), {0, 1, 2, 3, 4, 5, 6, 7}, ""), 4);
  EXPECT_EQ(default_thread_count(sys.root(), {0, 2, 4}, ""), 3);
  EXPECT_EQ(default_thread_count(sys.root(), {6, 7}, ""), 1);
  // The same core ids on two packages are two cores each.
  FakeSys two;
  for (int i = 0; i < 4; ++i) two.cpu(i, i / 2, i % 2);
  EXPECT_EQ(default_thread_count(two.root(), {0, 1, 2, 3}, ""), 4);
  // Without topology files every allowed CPU is a core.
  FakeSys bare;
  std::filesystem::create_directories(bare.root());
  EXPECT_EQ(default_thread_count(bare.root(), {0, 1, 2}, ""), 3);
  EXPECT_EQ(default_thread_count(bare.root(), {}, ""), 1);
}

TEST(CpuThreads, HybridCpusTakeThePerformanceCores) {
  FakeSys sys;
  for (int i = 0; i < 8; ++i) sys.cpu(i, 0, i / 2);       // four P-cores with SMT: CPUs 0-7
  for (int i = 8; i < 16; ++i) sys.cpu(i, 0, 8 + i - 8);  // eight E-cores: CPUs 8-15
  sys.performance_cores("0-7");
  std::vector<int> all;
  for (int i = 0; i < 16; ++i) all.push_back(i);
  EXPECT_EQ(default_thread_count(sys.root(), all, ""), 4);
  EXPECT_EQ(default_thread_count(sys.root(), {0, 1, 8, 9, 10}, ""), 1);  // the one P-core allowed
  EXPECT_EQ(default_thread_count(sys.root(), {8, 9, 10}, ""), 3);        // E-cores only: those
}

TEST(CpuThreads, CgroupQuotaCaps) {
  FakeSys sys;
  for (int i = 0; i < 8; ++i) sys.cpu(i, 0, i);
  const std::vector<int> all = {0, 1, 2, 3, 4, 5, 6, 7};
  EXPECT_EQ(default_thread_count(sys.root(), all, "200000 100000"), 2);
  EXPECT_EQ(default_thread_count(sys.root(), all, "150000 100000"), 2);  // rounded up
  EXPECT_EQ(default_thread_count(sys.root(), all, "50000 100000"), 1);
  EXPECT_EQ(default_thread_count(sys.root(), all, "max 100000"), 8);
  EXPECT_EQ(default_thread_count(sys.root(), all, "2000000 100000"), 8);  // more than the cores
  EXPECT_EQ(default_thread_count(sys.root(), all, "garbage"), 8);
}

TEST(CpuThreads, CpuListsAndThisMachine) {
  EXPECT_EQ(parse_cpu_list("0-3,8,10-11"), (std::vector<int>{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(parse_cpu_list("5\n"), (std::vector<int>{5}));
  EXPECT_TRUE(parse_cpu_list("").empty());
  EXPECT_TRUE(parse_cpu_list("3-1").empty());
  EXPECT_TRUE(parse_cpu_list("a-b").empty());
  EXPECT_TRUE(parse_cpu_list("1,,2").empty());
  const int n = default_thread_count();
  EXPECT_GE(n, 1);
  EXPECT_LE(n, int(std::max(1u, std::thread::hardware_concurrency())));
  EXPECT_LE(n, available_cpu_count());  // cores among the allowed CPUs, never more
  EXPECT_LE(available_cpu_count(), int(std::max(1u, std::thread::hardware_concurrency())));
}

}  // namespace
}  // namespace engine
