// Model-level validation: architecture, hyperparameters, required tensors and shapes, special
// tokens, block_count, and split files.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "engine/model_file.h"
#include "engine/model_spec.h"
#include "engine/synthetic_model.h"
#include "model_rewrite.h"
#include "test_support.h"

namespace engine {
namespace {

using test::expect_error;
using test::Tweaks;

class ModelSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = dir_.file("base.gguf");
    SyntheticModelOptions o = *preset_options("tiny", Arch::llama);
    o.mix = WeightMix::f32;
    write_synthetic_model(o, base_);
  }
  ModelSpec load(const std::string& path) { return ModelSpec::from(ModelFile::open(path)); }
  // Rewrites the base model with `tw` and expects it to be refused with `parts`.
  void refused(const Tweaks& tw, std::vector<std::string> parts) {
    const std::string path = dir_.file("bad.gguf");
    test::rewrite_model(base_, path, tw);
    parts.insert(parts.begin(), path);
    expect_error([&] { load(path); }, parts);
  }
  static Tweaks set_u32(const std::string& key, uint32_t v) {
    Tweaks tw;
    tw.drop_keys = {key};
    tw.add_keys = [key, v](GgufWriter& w) { w.add_u32(key, v); };
    return tw;
  }
  test::TempDir dir_;
  std::string base_;
};

TEST_F(ModelSpecTest, EveryArchitectureLoadsWithItsHyperparameters) {
  for (Arch arch : {Arch::llama, Arch::qwen2, Arch::qwen3}) {
    SyntheticModelOptions o = *preset_options("tiny", arch);
    o.n_layer = 3;
    o.n_head = 8;
    o.n_head_kv = 2;
    o.head_dim = 32;
    o.n_ff = 768;
    o.tied_output = arch == Arch::qwen3;
    const std::string path = dir_.file("arch.gguf");
    write_synthetic_model(o, path);
    ModelSpec m = load(path);
    EXPECT_EQ(m.arch.arch, arch);
    EXPECT_EQ(m.hp.n_layer, 3u);
    EXPECT_EQ(m.hp.n_embd, 256u);
    EXPECT_EQ(m.hp.n_head, 8u);
    EXPECT_EQ(m.hp.n_head_kv, 2u);
    EXPECT_EQ(m.hp.head_dim, 32u);
    EXPECT_EQ(m.hp.n_ff, 768u);
    EXPECT_EQ(m.hp.n_vocab, 512u);
    EXPECT_EQ(m.hp.qkv_bias, arch == Arch::qwen2);
    EXPECT_EQ(m.hp.qk_norm, arch == Arch::qwen3);
    EXPECT_EQ(m.hp.tied_output, arch == Arch::qwen3);
    EXPECT_EQ(m.arch.rope_style, arch == Arch::llama ? RopeStyle::normal : RopeStyle::neox);
    ASSERT_EQ(m.layer_tensors.size(), 3u);
    EXPECT_EQ(m.layer_tensors[2].size(), arch == Arch::llama ? 9u : arch == Arch::qwen2 ? 12u : 11u);
    // Exact bytes: attn q/k/v/o + ffn, f16 matrices and f32 norms.
    uint64_t expect = 2 * (256 * 256 + 2 * 256 * 64 + 256 * 256 + 3 * 256 * 768) + 4 * 2 * 256;
    if (arch == Arch::qwen2) expect += 4 * (256 + 64 + 64);
    if (arch == Arch::qwen3) expect += 4 * (32 + 32);
    EXPECT_EQ(m.layer_bytes(1), expect);
    EXPECT_EQ(m.input_bytes(), 2u * 256 * 512);
    EXPECT_EQ(m.output_bytes(), 4u * 256 + (o.tied_output ? 0 : 2u * 256 * 512));
  }
}

TEST_F(ModelSpecTest, ArchitectureKeyProblems) {
  Tweaks tw;
  tw.drop_keys = {"general.architecture"};
  refused(tw, {"general.architecture", "required key is missing"});
  tw.add_keys = [](GgufWriter& w) { w.add_string("general.architecture", "gptj"); };
  refused(tw, {"general.architecture", "unknown architecture 'gptj'"});
  tw.add_keys = [](GgufWriter& w) { w.add_u32("general.architecture", 1); };
  refused(tw, {"general.architecture", "has type u32, expected a string"});
}

TEST_F(ModelSpecTest, MissingOrWrongTypedHyperparameters) {
  Tweaks tw;
  tw.drop_keys = {"llama.embedding_length"};
  refused(tw, {"llama.embedding_length", "required key is missing"});
  tw.add_keys = [](GgufWriter& w) { w.add_string("llama.embedding_length", "256"); };
  refused(tw, {"llama.embedding_length", "has type string, expected an integer"});
  refused(set_u32("llama.attention.head_count_kv", 3), {"head_count_kv", "3 does not divide"});
  tw = {};
  tw.drop_keys = {"llama.attention.layer_norm_rms_epsilon"};
  refused(tw, {"layer_norm_rms_epsilon", "required key is missing"});
}

TEST_F(ModelSpecTest, BlockCountOutOfRange) {
  refused(set_u32("llama.block_count", 0), {"llama.block_count", "0 outside 1..4096"});
  refused(set_u32("llama.block_count", 100000), {"llama.block_count", "100000 outside"});
  refused(set_u32("llama.block_count", 1000), {"llama.block_count", "only 21 tensors"});
  refused(set_u32("llama.block_count", 3), {"blk.2.attn_norm.weight", "required tensor is missing"});
  refused(set_u32("llama.block_count", 1), {"blk.1.", "beyond block_count 1"});
}

TEST_F(ModelSpecTest, MissingRequiredTensors) {
  Tweaks tw;
  tw.drop_tensors = {"blk.1.ffn_up.weight"};
  refused(tw, {"tensor 'blk.1.ffn_up.weight'", "required tensor is missing"});
  tw.drop_tensors = {"token_embd.weight"};
  refused(tw, {"tensor 'token_embd.weight'", "required tensor is missing"});
  tw.drop_tensors = {"output_norm.weight"};
  refused(tw, {"tensor 'output_norm.weight'", "required tensor is missing"});
}

TEST_F(ModelSpecTest, ShapesMustMatchHyperparameters) {
  Tweaks tw;
  tw.reshape["blk.0.attn_q.weight"] = {256, 128};
  refused(tw, {"tensor 'blk.0.attn_q.weight'", "shape [256, 128]", "expected [256, 256]"});
  tw.reshape = {{"blk.1.ffn_norm.weight", {128}}};
  refused(tw, {"tensor 'blk.1.ffn_norm.weight'", "expected [256]"});
  refused(set_u32("llama.feed_forward_length", 1024), {"ffn_gate.weight", "expected [256, 1024]"});
}

TEST_F(ModelSpecTest, UnknownTensorsAreRefused) {
  Tweaks tw;
  tw.add_f32_tensors = {{"blk.0.ffn_extra.weight", {256}}};
  refused(tw, {"tensor 'blk.0.ffn_extra.weight'", "not a tensor of the llama architecture"});
  tw.add_f32_tensors = {{"blk.7.attn_norm.weight", {256}}};
  refused(tw, {"tensor 'blk.7.attn_norm.weight'", "layer 7 is beyond block_count 2"});
  tw.add_f32_tensors = {{"blk.1.attn_q.bias", {256}}};  // optional, but then in every layer
  refused(tw, {"tensor 'blk.1.attn_q.bias'", "present although layer 0 does not have it"});
}

TEST_F(ModelSpecTest, SpecialTokensMustBeInTheVocabulary) {
  refused(set_u32("tokenizer.ggml.eos_token_id", 512),
          {"tokenizer.ggml.eos_token_id", "token id 512 outside the vocabulary (0..511)"});
  Tweaks tw;
  tw.add_keys = [](GgufWriter& w) { w.add_i32("tokenizer.ggml.padding_token_id", -1); };
  refused(tw, {"tokenizer.ggml.padding_token_id", "token id -1"});
  refused(set_u32("llama.vocab_size", 500), {"llama.vocab_size", "500 but token_embd.weight has 512"});
}

TEST_F(ModelSpecTest, TokenizerSummary) {
  ModelSpec m = load(base_);
  EXPECT_EQ(m.tokenizer.model, "llama");
  EXPECT_EQ(m.tokenizer.n_tokens, 512u);
  ASSERT_FALSE(m.tokenizer.specials.empty());
  bool saw_bos = false;
  for (const auto& s : m.tokenizer.specials) {
    if (s.key == "bos") {
      saw_bos = true;
      EXPECT_EQ(s.id, 1);
      EXPECT_EQ(s.text, "<s>");
    }
  }
  EXPECT_TRUE(saw_bos);
}

// Writes the base model as `parts` split files named like llama.cpp's gguf-split.
std::vector<std::string> write_split(const std::string& base, const test::TempDir& dir, int parts) {
  GgufFile src = GgufFile::open(base);
  const size_t n = src.tensors().size();
  std::vector<std::string> paths;
  for (int p = 0; p < parts; ++p) {
    const std::string path = dir.file(fmt::format("split-{:05d}-of-{:05d}.gguf", p + 1, parts));
    Tweaks tw;
    tw.keep_metadata = p == 0;
    std::set<std::string> mine;
    for (size_t i = 0; i < n; ++i) {
      if (i * parts / n == static_cast<size_t>(p)) mine.emplace(src.tensors()[i].name);
    }
    tw.keep_tensor = [mine](const TensorInfo& t) { return mine.count(std::string(t.name)) > 0; };
    tw.add_keys = [p, parts, n](GgufWriter& w) {
      w.add_u32("split.no", static_cast<uint32_t>(p));  // llama.cpp writes u16; any integer works
      w.add_u32("split.count", static_cast<uint32_t>(parts));
      w.add_i32("split.tensors.count", static_cast<int32_t>(n));
    };
    test::rewrite_model(base, path, tw);
    paths.push_back(path);
  }
  return paths;
}

TEST_F(ModelSpecTest, SplitFilesOpenAsOneModel) {
  const auto paths = write_split(base_, dir_, 3);
  const ModelFile single = ModelFile::open(base_);
  for (const auto& path : paths) {  // any part opens the whole model
    const ModelFile split = ModelFile::open(path);
    EXPECT_EQ(split.files().size(), 3u);
    ASSERT_EQ(split.tensors().size(), single.tensors().size());
    const ModelSpec a = ModelSpec::from(single), b = ModelSpec::from(split);
    for (uint32_t l = 0; l < a.hp.n_layer; ++l) EXPECT_EQ(a.layer_bytes(l), b.layer_bytes(l));
    for (const auto& t : single.tensors()) {
      const TensorInfo* u = split.find_tensor(t.name);
      ASSERT_NE(u, nullptr) << t.name;
      EXPECT_EQ(0, std::memcmp(t.data, u->data, t.n_bytes)) << t.name;
    }
  }
  EXPECT_EQ(ModelFile::open(paths[2]).find_tensor("output.weight")->split, 2u);
}

TEST_F(ModelSpecTest, SplitFileProblems) {
  const auto paths = write_split(base_, dir_, 2);
  std::filesystem::remove(paths[1]);
  expect_error([&] { ModelFile::open(paths[0]); }, {paths[1], "cannot open"});
  const std::string renamed = dir_.file("renamed.gguf");
  std::filesystem::rename(paths[0], renamed);
  expect_error([&] { ModelFile::open(renamed); }, {renamed, "does not end in -NNNNN-of-NNNNN.gguf"});
}

}  // namespace
}  // namespace engine
