// ChatSession with a thinking template (QwQ's way: replies open with "<think>\n", the history
// keeps only the answer after "</think>"; Qwen3's, with thinking on and off). A random model's
// sampled reply that happens to hold </think>, or any reply after an opener the history leaves
// out, must leave the cache where the reply (its opener) began, the next turn must process the
// answer, its end tag and the new message, and that turn must see exactly the tokens a fresh
// context fed the same history sees (its greedy reply is the same).
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "engine/chat.h"
#include "engine/chat_session.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/synthetic_model.h"
#include "engine/tokenizer.h"
#include "test_support.h"

namespace engine {
namespace {

std::vector<int32_t> tokens_of(const Tokenizer& tok, const std::vector<ChatSegment>& segments, bool first) {
  std::vector<Tokenizer::Segment> segs;
  for (const auto& s : segments) segs.push_back({s.text, s.parse_special});
  return tok.tokenize(segs, first);
}

// QwQ's template (the prompt opens the reply with "<think>\n"), Qwen3's (the model opens it), and
// Qwen3's with thinking turned off (the prompt writes an empty block the history leaves out).
enum class Thinking { template_opens, model_opens, switched_off };

class ChatSessionThinking : public ::testing::TestWithParam<Thinking> {};

TEST_P(ChatSessionThinking, RepliesLeaveOnlyTheAnswerInTheHistory) {
  const Thinking mode = GetParam();
  const bool template_opens = mode == Thinking::template_opens;
  test::TempDir dir;
  SyntheticModelOptions o = *preset_options("tiny", Arch::qwen2);
  o.thinking = template_opens;
  o.thinking_by_model = !template_opens;
  write_synthetic_model(o, dir.file("m.gguf"));
  const auto model = Model::load(dir.file("m.gguf"));
  const Tokenizer& tok = *model->tokenizer();
  ContextOptions co;
  co.n_ctx = 1024;
  co.n_threads = 2;
  SamplingParams sampled;
  sampled.temperature = 1.5f;
  sampled.top_k = 0;
  sampled.top_p = 1.0f;
  sampled.min_p = 0.0f;
  SamplingParams greedy;
  greedy.greedy = true;
  ChatFormatter f(ChatTemplate::chatml, template_opens, true, mode != Thinking::template_opens);
  if (mode == Thinking::switched_off) f.set_thinking(false);
  const std::vector<int32_t> opener = tokens_of(tok, {{std::string(f.reply_opener()), true}}, false);
  ASSERT_EQ(opener.empty(), mode == Thinking::model_opens);
  for (uint64_t seed = 1; seed < 400; ++seed) {
    ChatSession chat(model, co, "Be brief.");
    ASSERT_EQ(chat.template_kind(), ChatTemplate::chatml);
    if (mode == Thinking::switched_off) chat.set_thinking(false);
    EXPECT_EQ(chat.thinking(), mode != Thinking::switched_off);
    sampled.seed = seed;
    ChatSession::TurnStats first;
    const std::string reply = chat.send("first question", sampled, 200, {}, &first);
    const bool has_reasoning = reply.find("</think>") != std::string::npos;
    EXPECT_EQ(first.reasoning_dropped, has_reasoning);
    // A reply the history writes as it is, after no opener, stays in the cache; any other goes.
    if (!has_reasoning && opener.empty()) continue;
    // The cache: the system prompt and the first message, up to where the reply began (before
    // the opener the template wrote for it).
    ChatFormatter fresh_format = f;
    std::vector<ChatSegment> opening = fresh_format.system("Be brief.");
    for (auto& s : fresh_format.user_turn("first question")) opening.push_back(s);
    std::vector<int32_t> history = tokens_of(tok, opening, true);
    ASSERT_EQ(first.prompt_tokens, history.size());
    ASSERT_TRUE(std::equal(opener.begin(), opener.end(), history.end() - opener.size()));
    history.resize(history.size() - opener.size());
    EXPECT_EQ(chat.context().n_past(), history.size());

    // The next turn: the answer alone, its end tag, the new message.
    std::vector<ChatSegment> next = {{fresh_format.history_reply(reply), false}};
    for (auto& s : fresh_format.end_assistant_turn()) next.push_back(s);
    for (auto& s : fresh_format.user_turn("second question")) next.push_back(s);
    const std::vector<int32_t> turn = tokens_of(tok, next, false);
    ChatSession::TurnStats second;
    const std::string reply2 = chat.send("second question", greedy, 24, {}, &second);
    EXPECT_EQ(second.prompt_tokens, turn.size());
    EXPECT_EQ(second.dropped_turns, 0u);

    // A fresh context fed that history replies the same.
    history.insert(history.end(), turn.begin(), turn.end());
    Context fresh(model, co);
    TokenStreamer stream(model->tokenizer(), false);
    std::string want;
    for (int32_t t : fresh.generate(history, 24, greedy)) {
      if (!model->is_end_of_generation(t)) want += stream.push(t);
    }
    want += stream.flush();
    EXPECT_EQ(reply2, want);
    // Thinking off, any reply does; else go on to one that holds reasoning.
    if (has_reasoning || mode == Thinking::switched_off) return;
  }
  FAIL() << "no sampled reply held </think> in 400 tries";
}

INSTANTIATE_TEST_SUITE_P(Templates, ChatSessionThinking,
                         ::testing::Values(Thinking::template_opens, Thinking::model_opens, Thinking::switched_off),
                         [](const ::testing::TestParamInfo<Thinking>& p) {
                           switch (p.param) {
                             case Thinking::template_opens: return std::string("TemplateOpensTheReasoning");
                             case Thinking::model_opens: return std::string("ModelOpensTheReasoning");
                             case Thinking::switched_off: return std::string("ThinkingSwitchedOff");
                           }
                           return std::string();
                         });

// A template without enable_thinking cannot turn the reasoning off: the session says so.
// A session with a draft model (here the model itself) replies as one without, turn by turn:
// the same sampled replies with the same seed, the same history kept (reasoning taken out of the
// cache, turns dropped when the context fills), while the draft's tokens are kept.
TEST(ChatSession, ADraftModelGivesTheSameConversation) {
  test::TempDir dir;
  SyntheticModelOptions o = *preset_options("tiny", Arch::qwen2);
  o.thinking = true;
  o.mix = WeightMix::f32;  // a batch's sums as a single step's, to within ties
  write_synthetic_model(o, dir.file("m.gguf"));
  const auto model = Model::load(dir.file("m.gguf"));
  ContextOptions co;
  co.n_ctx = 256;  // room for a reply: 64 tokens; a few turns fill it
  co.n_threads = 2;
  SamplingParams sp;
  sp.temperature = 0.3f;
  DraftParams dp;
  dp.n_max = 4;
  dp.p_min = 0.0f;
  int64_t accepted = 0;
  size_t dropped = 0;
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    ChatSession plain(model, co, "Be brief."), drafted(model, co, "Be brief.");
    drafted.set_draft(model, co, dp);
    for (int turn = 0; turn < 5; ++turn) {
      sp.seed = seed * 100 + uint64_t(turn);
      const std::string message = "question " + std::to_string(turn) + " of " + std::to_string(seed);
      ChatSession::TurnStats a, b;
      const std::string want = plain.send(message, sp, 60, {}, &a);
      EXPECT_EQ(drafted.send(message, sp, 60, {}, &b), want) << "seed " << seed << " turn " << turn;
      EXPECT_EQ(b.prompt_tokens, a.prompt_tokens);
      EXPECT_EQ(b.generated_tokens, a.generated_tokens);
      EXPECT_EQ(b.dropped_turns, a.dropped_turns);
      EXPECT_EQ(b.reasoning_dropped, a.reasoning_dropped);
      EXPECT_EQ(b.stop, a.stop);
      EXPECT_EQ(drafted.context().n_past(), plain.context().n_past());
      EXPECT_EQ(a.drafted, 0);
      // The draft stays in step: every turn that takes a second token drafts.
      EXPECT_EQ(b.drafted > 0, b.generated_tokens > 1) << "seed " << seed << " turn " << turn;
      accepted += b.accepted;
      dropped += a.dropped_turns;
    }
    EXPECT_THROW(drafted.set_draft(model, co, dp), Error);  // past the first turn
  }
  EXPECT_GT(accepted, 0);
  EXPECT_GT(dropped, 0u) << "no turn filled the context: the reformatted path was not exercised";
}

TEST(ChatSession, RefusesToTurnThinkingOffWithoutTheSwitch) {
  test::TempDir dir;
  SyntheticModelOptions o = *preset_options("tiny", Arch::qwen2);
  o.thinking = true;
  write_synthetic_model(o, dir.file("qwq.gguf"));
  ContextOptions co;
  co.n_ctx = 64;
  co.n_threads = 1;
  ChatSession chat(Model::load(dir.file("qwq.gguf")), co);
  EXPECT_THROW(chat.set_thinking(false), Error);
  EXPECT_TRUE(chat.thinking());
}

// A model without a chat template gets ChatML and the session says so; one with a recognised
// template gets no warning. (The warning was once written before its string existed and lost.)
TEST(ChatSession, NamesAMissingTemplate) {
  test::TempDir dir;
  write_synthetic_model(*preset_options("tiny", Arch::llama), dir.file("plain.gguf"));  // no template
  write_synthetic_model(*preset_options("tiny", Arch::qwen2), dir.file("chatml.gguf"));
  ContextOptions co;
  co.n_ctx = 64;
  co.n_threads = 1;
  const ChatSession plain(Model::load(dir.file("plain.gguf")), co);
  EXPECT_EQ(plain.warning(), "the model has no chat template: using ChatML");
  EXPECT_EQ(plain.template_kind(), ChatTemplate::chatml);
  const ChatSession chatml(Model::load(dir.file("chatml.gguf")), co);
  EXPECT_EQ(chatml.warning(), "");
}

// Context::truncate, which the session's rollback rests on: after it, evaluation goes on as if
// the dropped tokens had never been there (bit for bit: the kept part went in as the fresh
// context's did, so the same calls meet the same cache), and
// asking to keep more than the context holds is refused.
TEST(ContextTruncate, ContinuesAsIfTheTailWasNeverThere) {
  test::TempDir dir;
  write_synthetic_model(*preset_options("tiny", Arch::qwen2), dir.file("m.gguf"));
  const auto model = Model::load(dir.file("m.gguf"));
  ContextOptions co;
  co.n_ctx = 64;
  co.n_threads = 2;
  const std::vector<int32_t> a = {5, 17, 300, 42, 99, 7, 123, 456, 8, 19}, b = {77, 88, 99, 111};
  Context cut(model, co);
  cut.eval(std::vector<int32_t>(a.begin(), a.begin() + 6));  // the kept part as the fresh one takes it
  cut.eval(std::vector<int32_t>(a.begin() + 6, a.end()));
  cut.truncate(6);
  EXPECT_EQ(cut.n_past(), 6u);
  const auto got = cut.eval(b);
  const std::vector<float> logits(got.begin(), got.end());
  Context fresh(model, co);
  fresh.eval(std::vector<int32_t>(a.begin(), a.begin() + 6));
  const auto want = fresh.eval(b);
  EXPECT_EQ(logits, std::vector<float>(want.begin(), want.end()));
  test::expect_error([&] { cut.truncate(11); }, {"truncate", "11", "holds 10"});
}

}  // namespace
}  // namespace engine
