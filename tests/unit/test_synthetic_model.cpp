// engine-mkmodel's models: llama.cpp's Q4_K_M type mix, QwQ-32B's exact figures (sparse file),
// determinism by seed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "engine/model_file.h"
#include "engine/model_spec.h"
#include "engine/synthetic_model.h"
#include "test_support.h"

namespace engine {
namespace {

TEST(SyntheticModel, Q4KMUsesLlamaCppLayerRule) {
  // For 64 layers llama.cpp gives attn_v and ffn_down Q6_K in layers 0-7, 10, 13, ..., 55, 56-63.
  std::set<uint32_t> more_bits;
  for (uint32_t l = 0; l < 8; ++l) more_bits.insert(l);
  for (uint32_t l = 10; l <= 55; l += 3) more_bits.insert(l);
  for (uint32_t l = 56; l < 64; ++l) more_bits.insert(l);
  for (uint32_t l = 0; l < 64; ++l) {
    const GgmlType want = more_bits.count(l) ? GgmlType::Q6_K : GgmlType::Q4_K;
    EXPECT_EQ(tensor_type_for(WeightMix::q4_k_m, "blk.0.attn_v.weight", l, 64, false), want) << l;
    EXPECT_EQ(tensor_type_for(WeightMix::q4_k_m, "blk.0.ffn_down.weight", l, 64, false), want) << l;
    EXPECT_EQ(tensor_type_for(WeightMix::q4_k_m, "blk.0.attn_q.weight", l, 64, false),
              GgmlType::Q4_K);
  }
  EXPECT_EQ(tensor_type_for(WeightMix::q4_k_m, "output.weight", 0, 64, false), GgmlType::Q6_K);
  EXPECT_EQ(tensor_type_for(WeightMix::q4_k_m, "token_embd.weight", 0, 64, false), GgmlType::Q4_K);
  EXPECT_EQ(tensor_type_for(WeightMix::q4_k_m, "token_embd.weight", 0, 64, true), GgmlType::Q6_K);
  EXPECT_EQ(tensor_type_for(WeightMix::q4_k_m, "blk.3.attn_norm.weight", 3, 64, false),
            GgmlType::F32);
  EXPECT_EQ(tensor_type_for(WeightMix::q4_k_m, "blk.3.attn_q.bias", 3, 64, false), GgmlType::F32);
}

// The other K-quant mixes, by llama.cpp's rules (llama_tensor_get_type): Q3_K_M gives attn_v Q5_K
// in its first two layers and Q4_K after, ffn_down Q5_K in the first sixteenth and Q4_K after,
// attn_output Q4_K; Q2_K gives attn_v Q3_K (Q4_K with four or more query heads a KV head),
// ffn_down and attn_output Q3_K; Q5_K_M is Q4_K_M with Q5_K for Q4_K. The output is Q6_K in all.
TEST(SyntheticModel, KQuantMixesFollowLlamaCppRules) {
  for (uint32_t l = 0; l < 64; ++l) {
    EXPECT_EQ(tensor_type_for(WeightMix::q3_k_m, "blk.0.attn_v.weight", l, 64, false), l < 2 ? GgmlType::Q5_K : GgmlType::Q4_K);
    EXPECT_EQ(tensor_type_for(WeightMix::q3_k_m, "blk.0.ffn_down.weight", l, 64, false), l < 4 ? GgmlType::Q5_K : GgmlType::Q4_K);
    EXPECT_EQ(tensor_type_for(WeightMix::q3_k_m, "blk.0.attn_output.weight", l, 64, false), GgmlType::Q4_K);
    EXPECT_EQ(tensor_type_for(WeightMix::q3_k_m, "blk.0.ffn_up.weight", l, 64, false), GgmlType::Q3_K);
    EXPECT_EQ(tensor_type_for(WeightMix::q2_k, "blk.0.attn_v.weight", l, 64, false, 2), GgmlType::Q3_K);
    EXPECT_EQ(tensor_type_for(WeightMix::q2_k, "blk.0.attn_v.weight", l, 64, false, 5), GgmlType::Q4_K);
    EXPECT_EQ(tensor_type_for(WeightMix::q2_k, "blk.0.ffn_down.weight", l, 64, false), GgmlType::Q3_K);
    EXPECT_EQ(tensor_type_for(WeightMix::q2_k, "blk.0.attn_q.weight", l, 64, false), GgmlType::Q2_K);
    const GgmlType q4 = tensor_type_for(WeightMix::q4_k_m, "blk.0.ffn_down.weight", l, 64, false);
    EXPECT_EQ(tensor_type_for(WeightMix::q5_k_m, "blk.0.ffn_down.weight", l, 64, false),
              q4 == GgmlType::Q6_K ? GgmlType::Q6_K : GgmlType::Q5_K);
  }
  for (WeightMix mix : {WeightMix::q2_k, WeightMix::q3_k_m, WeightMix::q5_k_m, WeightMix::q4_1, WeightMix::q5_0,
                        WeightMix::q5_1}) {
    EXPECT_EQ(tensor_type_for(mix, "output.weight", 0, 64, false), GgmlType::Q6_K) << weight_mix_name(mix);
    EXPECT_EQ(tensor_type_for(mix, "blk.0.attn_norm.weight", 0, 64, false), GgmlType::F32) << weight_mix_name(mix);
  }
}

// llama.cpp's IQ2 and IQ1 mixes (llama_tensor_get_type): the output Q5_K; token_embd Q2_K (IQ2_M:
// IQ3_S); attn_v Q4_K with four or more query heads a KV head, else Q2_K (IQ2_M: IQ3_S); ffn_down
// Q2_K (IQ2_M: IQ3_S) in the first eighth of the layers; attn_output IQ3_S for IQ2_M, IQ2_XXS for
// the IQ1 mixes; the rest the mix's own type (IQ2_M: IQ2_S).
TEST(SyntheticModel, IQ2AndIQ1MixesFollowLlamaCppRules) {
  struct Mix {
    WeightMix mix;
    GgmlType bulk, embd, v_mha, early_down, attn_output;
  };
  const Mix mixes[] = {
      {WeightMix::iq2_xxs, GgmlType::IQ2_XXS, GgmlType::Q2_K, GgmlType::Q2_K, GgmlType::Q2_K, GgmlType::IQ2_XXS},
      {WeightMix::iq2_xs, GgmlType::IQ2_XS, GgmlType::Q2_K, GgmlType::Q2_K, GgmlType::Q2_K, GgmlType::IQ2_XS},
      {WeightMix::iq2_m, GgmlType::IQ2_S, GgmlType::IQ3_S, GgmlType::IQ3_S, GgmlType::IQ3_S, GgmlType::IQ3_S},
      {WeightMix::iq1_s, GgmlType::IQ1_S, GgmlType::Q2_K, GgmlType::Q2_K, GgmlType::Q2_K, GgmlType::IQ2_XXS},
      {WeightMix::iq1_m, GgmlType::IQ1_M, GgmlType::Q2_K, GgmlType::Q2_K, GgmlType::Q2_K, GgmlType::IQ2_XXS},
  };
  for (const Mix& m : mixes) {
    const std::string_view name = weight_mix_name(m.mix);
    EXPECT_EQ(tensor_type_for(m.mix, "output.weight", 0, 64, false), GgmlType::Q5_K) << name;
    EXPECT_EQ(tensor_type_for(m.mix, "token_embd.weight", 0, 64, false), m.embd) << name;
    EXPECT_EQ(tensor_type_for(m.mix, "token_embd.weight", 0, 64, true), GgmlType::Q5_K) << name;  // tied: the head
    for (uint32_t l = 0; l < 64; ++l) {
      EXPECT_EQ(tensor_type_for(m.mix, "blk.0.attn_v.weight", l, 64, false, 5), GgmlType::Q4_K) << name;
      EXPECT_EQ(tensor_type_for(m.mix, "blk.0.attn_v.weight", l, 64, false, 1), m.v_mha) << name;
      EXPECT_EQ(tensor_type_for(m.mix, "blk.0.ffn_down.weight", l, 64, false), l < 8 ? m.early_down : m.bulk) << name;
      EXPECT_EQ(tensor_type_for(m.mix, "blk.0.attn_output.weight", l, 64, false), m.attn_output) << name;
      EXPECT_EQ(tensor_type_for(m.mix, "blk.0.attn_q.weight", l, 64, false), m.bulk) << name;
      EXPECT_EQ(tensor_type_for(m.mix, "blk.0.ffn_gate.weight", l, 64, false), m.bulk) << name;
    }
  }
}

// llama.cpp's ternary mixes: the output Q6_K, token_embd Q4_K (tied: the head's Q6_K), every other
// matrix the mix's own type.
TEST(SyntheticModel, TernaryMixesFollowLlamaCppRules) {
  for (const auto& [mix, type] : {std::pair{WeightMix::tq1_0, GgmlType::TQ1_0}, std::pair{WeightMix::tq2_0, GgmlType::TQ2_0}}) {
    const std::string_view name = weight_mix_name(mix);
    EXPECT_EQ(tensor_type_for(mix, "output.weight", 0, 64, false), GgmlType::Q6_K) << name;
    EXPECT_EQ(tensor_type_for(mix, "token_embd.weight", 0, 64, false), GgmlType::Q4_K) << name;
    EXPECT_EQ(tensor_type_for(mix, "token_embd.weight", 0, 64, true), GgmlType::Q6_K) << name;
    for (const char* t : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}) {
      EXPECT_EQ(tensor_type_for(mix, std::string("blk.3.") + t + ".weight", 3, 64, false, 8), type) << name << " " << t;
    }
    EXPECT_EQ(tensor_type_for(mix, "blk.3.attn_norm.weight", 3, 64, false), GgmlType::F32) << name;
  }
}

// Every mix's name (engine-mkmodel's --type choices) parses back to that mix.
TEST(SyntheticModel, EveryMixNameParsesBack) {
  const std::vector<std::string_view> names = weight_mix_names();
  EXPECT_EQ(names.size(), 24u);
  for (const std::string_view name : names) {
    const auto mix = parse_weight_mix(name);
    ASSERT_TRUE(mix.has_value()) << name;
    EXPECT_EQ(weight_mix_name(*mix), name);
  }
  EXPECT_FALSE(parse_weight_mix("mxfp4_moe").has_value());
}

TEST(SyntheticModel, SparseQwq32MatchesTheRealQ4KMFile) {
  test::TempDir dir;
  SyntheticModelOptions o = *preset_options("qwq32", Arch::llama);
  o.mix = WeightMix::q4_k_m;
  o.sparse = true;
  const std::string path = dir.file("qwq32.gguf");
  write_synthetic_model(o, path);
  const ModelFile file = ModelFile::open(path);
  const ModelSpec spec = ModelSpec::from(file);
  // The published QwQ-32B Q4_K_M file: 771 tensors (321 F32, 385 Q4_K, 65 Q6_K), 19.85 GB.
  std::map<GgmlType, int> counts;
  for (const auto& t : file.tensors()) ++counts[t.type];
  EXPECT_EQ(file.tensors().size(), 771u);
  EXPECT_EQ(counts[GgmlType::F32], 321);
  EXPECT_EQ(counts[GgmlType::Q4_K], 385);
  EXPECT_EQ(counts[GgmlType::Q6_K], 65);
  EXPECT_LT(std::fabs(double(file.total_bytes()) / 19.85e9 - 1.0), 0.001) << file.total_bytes();
  EXPECT_EQ(spec.arch.arch, Arch::qwen2);
  EXPECT_EQ(spec.hp.n_layer, 64u);
  EXPECT_EQ(spec.hp.n_ctx_train, 40960u);
  EXPECT_FLOAT_EQ(spec.hp.rope_freq_base, 1e6f);
  EXPECT_TRUE(spec.hp.qkv_bias);
  EXPECT_FALSE(spec.hp.tied_output);
  // The output matrix alone: 152064 x 5120 in Q6_K (210 bytes per 256 values).
  EXPECT_EQ(file.find_tensor("output.weight")->n_bytes, 152064ull * 5120 / 256 * 210);
}

TEST(SyntheticModel, SameSeedSameBytesOtherSeedOtherBytes) {
  test::TempDir dir;
  SyntheticModelOptions o = *preset_options("tiny", Arch::qwen2);
  o.mix = WeightMix::q4_k_m;
  write_synthetic_model(o, dir.file("a.gguf"));
  write_synthetic_model(o, dir.file("b.gguf"));
  o.seed = 2;
  write_synthetic_model(o, dir.file("c.gguf"));
  const auto a = ModelFile::open(dir.file("a.gguf"));
  const auto b = ModelFile::open(dir.file("b.gguf"));
  const auto c = ModelFile::open(dir.file("c.gguf"));
  const TensorInfo* ta = a.find_tensor("blk.1.ffn_down.weight");
  EXPECT_EQ(0, std::memcmp(ta->data, b.find_tensor(ta->name)->data, ta->n_bytes));
  EXPECT_NE(0, std::memcmp(ta->data, c.find_tensor(ta->name)->data, ta->n_bytes));
}

TEST(SyntheticModel, BadShapesAreRefusedByName) {
  test::TempDir dir;
  SyntheticModelOptions o;
  o.mix = WeightMix::q4_k_m;
  o.n_embd = 320;
  test::expect_error([&] { write_synthetic_model(o, dir.file("x.gguf")); },
                     {"row length 320", "256", "q4_k_m"});
  o = {};
  o.n_head_kv = 3;
  test::expect_error([&] { write_synthetic_model(o, dir.file("x.gguf")); }, {"heads-kv", "3"});
}

}  // namespace
}  // namespace engine
