// ChatSession with a thinking template (QwQ's way: replies open with "<think>\n", the history
// keeps only the answer after "</think>"). A random model's sampled reply that happens to hold
// </think> must leave the cache where the reply's "<think>\n" began, the next turn must process
// the answer, its end tag and the new message, and that turn must see exactly the tokens a
// fresh context fed the same history sees (its greedy reply is the same).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/chat.h"
#include "engine/chat_session.h"
#include "engine/engine.h"
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

// QwQ's template (the prompt opens the reply with "<think>\n") and Qwen3's (the model opens it).
class ChatSessionThinking : public ::testing::TestWithParam<bool> {};

TEST_P(ChatSessionThinking, RepliesLeaveOnlyTheAnswerInTheHistory) {
  const bool template_opens = GetParam();
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
  const std::vector<int32_t> opener = tokens_of(tok, {{"<think>\n", true}}, false);
  for (uint64_t seed = 1; seed < 400; ++seed) {
    ChatSession chat(model, co, "Be brief.");
    ASSERT_EQ(chat.template_kind(), ChatTemplate::chatml);
    sampled.seed = seed;
    ChatSession::TurnStats first;
    const std::string reply = chat.send("first question", sampled, 200, {}, &first);
    if (reply.find("</think>") == std::string::npos) {
      EXPECT_FALSE(first.reasoning_dropped);
      continue;
    }
    ASSERT_TRUE(first.reasoning_dropped) << reply;
    // The cache: the system prompt and the first message, up to where the reply began (before
    // the "<think>\n" the template opened it with).
    ChatFormatter f(ChatTemplate::chatml, template_opens, true);
    std::vector<ChatSegment> opening = f.system("Be brief.");
    for (auto& s : f.user_turn("first question")) opening.push_back(s);
    std::vector<int32_t> history = tokens_of(tok, opening, true);
    ASSERT_EQ(first.prompt_tokens, history.size());
    if (template_opens) history.resize(history.size() - opener.size());
    EXPECT_EQ(chat.context().n_past(), history.size());

    // The next turn: the answer alone, its end tag, the new message.
    std::vector<ChatSegment> next = {{f.history_reply(reply), false}};
    for (auto& s : f.end_assistant_turn()) next.push_back(s);
    for (auto& s : f.user_turn("second question")) next.push_back(s);
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
    return;
  }
  FAIL() << "no sampled reply held </think> in 400 tries";
}

INSTANTIATE_TEST_SUITE_P(Templates, ChatSessionThinking, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? std::string("TemplateOpensTheReasoning")
                                          : std::string("ModelOpensTheReasoning");
                         });

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
