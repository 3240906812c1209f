// Benchmarks in the manner of llama-bench, with placement as an axis: every combination of
// model x split x transport x KV cache type x prompt size x context depth, prompt (ppN) and generation (tgN)
// tokens/s as mean and standard deviation over repetitions after a warm-up.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace engine {

struct BenchOptions {
  std::vector<std::string> models;
  std::vector<std::string> splits = {"auto"};
  // As ContextOptions::transport, plus none (one stage); nccl and peer must connect at least one
  // pair of GPU stages. A row shows the transports that ran, per boundary.
  std::vector<std::string> transports = {"auto"};
  std::vector<std::string> kv_types = {"f16"};  // KV cache types (f16, q8_0, f32), as --kv-type
  std::string devices;                // as --devices; empty: every GPU
  std::vector<uint32_t> n_prompt = {512};
  std::vector<uint32_t> n_gen = {128};
  std::vector<uint32_t> depths = {0};  // tokens already in the KV cache before the test
  int repetitions = 5;
  int n_threads = 0;
  uint32_t n_batch = 512;
  uint32_t n_ubatch = 0;  // prompt micro-batch through the stages; 0: n_batch
  bool prompt_offload = true;  // as PlanOptions::prompt_offload
  // Speculative decoding: generation rows for each draft length of draft_max (0: without the
  // draft) with this draft model, planned on what each model's plan leaves (inventory_after).
  std::string draft_model;
  std::vector<int> draft_max = {0};
  float draft_p_min = 0.75f;
};

struct BenchResult {
  std::string model;       // file name
  uint64_t model_bytes = 0;
  std::string types;       // "385 Q4_K, 321 F32, 65 Q6_K"
  std::string split, devices;
  std::string cpu_isa;     // the CPU kernels' instruction set (cpu_kernels_isa(), engine.h)
  int threads = 0;         // CPU threads (--threads, or default_thread_count())
  std::string transport;
  std::string kv_type;     // "f16", "q8_0", "f32"
  // "cpu:0-21" or "0-31|32-63|cpu:-"; "cpu:0-9 (prompts on cuda0)|10-63" where a GPU multiplies
  // the CPU layers' prompt batches.
  std::string layers;
  std::string test;        // "pp512", "tg128"
  uint32_t depth = 0;
  // A speculative generation row: the draft's file name and length; the drafted tokens the
  // target kept. Such a row generates greedily from one prompt token (the others feed fixed
  // tokens), and has no bytes per token or roofline (a step reads the weights for several).
  std::string draft;
  int draft_max = 0;
  double acceptance = 0;
  int repetitions = 0;
  double tokens_per_s = 0, stddev = 0;
  double load_s = 0;
  uint64_t peak_bytes = 0;  // peak resident memory of the process (CPU)
  // Per GPU, the device memory the context took (free memory before it was built minus after the
  // rows ran): "cuda0 18.93 GiB|cuda1 18.20 GiB"; empty without GPU stages.
  std::string gpu_memory;
  // Generation rows (the memory-bound case): bytes read per token (every layer's weights, the
  // output head, one embedding row, and the KV cache up to each token's position, averaged over
  // the test), that times tokens/s, and tokens/s over the roofline: the time to read each
  // device's share at that device's measured bandwidth (a GPU's copy bandwidth, the host's read
  // bandwidth with the bench's threads for the CPU and simulated devices). 0 on prompt rows.
  uint64_t bytes_per_token = 0;
  double gb_per_s = 0, roofline_fraction = 0;
  std::string error;        // why the combination could not run; empty when it ran
};

// Runs every combination; a combination that cannot run gets a row with `error` and the rest
// still run. progress(message) is called as work proceeds.
std::vector<BenchResult> run_benchmarks(const BenchOptions& options,
                                        const std::function<void(const std::string&)>& progress = {});

enum class BenchFormat { markdown, csv, json, jsonl };
// Stable column names: model, model_bytes, types, split, devices, cpu_isa, threads, transport,
// kv_type, layers, test, depth, draft, draft_max, acceptance, repetitions, tokens_per_s, stddev,
// load_s, peak_bytes, gpu_memory, bytes_per_token, gb_per_s, roofline_fraction, error.
std::string format_bench(const std::vector<BenchResult>& results, BenchFormat format);

// Memory read bandwidth of this machine in bytes/s with `threads` threads (0: default_thread_count()): the best
// of a few passes over a 1 GiB buffer, each thread placing its own slice (first touch). The
// roofline of CPU decoding.
double host_read_bandwidth(int threads);

// Splits a comma-separated --split list; consecutive layer counts or ranges form one manual
// split ("auto,30,34" -> auto and 30,34), and '/' may separate them too ("30/34").
std::vector<std::string> parse_split_list(const std::string& text);

}  // namespace engine
