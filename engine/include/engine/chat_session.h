// A multi-turn conversation with one model: formats each turn with the model's chat template,
// keeps the KV cache across turns (only the new turn's tokens are processed), and streams the
// reply as text that never splits a UTF-8 character. When a turn and room for its reply no longer
// fit the context, the conversation is formatted anew from the system prompt and as many of the
// latest turns as fit, their texts tokenized again (as Ollama truncates a chat's history). With a
// thinking template (QwQ, DeepSeek-R1, Qwen3) the history holds each reply's answer without its
// reasoning, as the template writes it; Qwen3's can turn the reasoning off (set_thinking).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/chat.h"
#include "engine/engine.h"
#include "engine/speculative.h"
#include "engine/stop_strings.h"

namespace engine {

class ChatSession {
 public:
  // Throws engine::Error when the model has no tokenizer.
  ChatSession(std::shared_ptr<const Model> model, const ContextOptions& options,
              const std::string& system_prompt = "");

  // Non-empty when the template was not recognised and ChatML is used instead.
  const std::string& warning() const { return warning_; }
  ChatTemplate template_kind() const { return format_.kind(); }
  const Context& context() const { return ctx_; }

  struct TurnStats {
    size_t prompt_tokens = 0;  // tokens processed for this turn before generating
    size_t generated_tokens = 0;
    double prompt_seconds = 0, generation_seconds = 0;
    size_t dropped_turns = 0;  // earlier turns left out to make room (0: the cache was kept)
    StopReason stop = StopReason::n_predict;
    bool stop_string = false;  // the reply ended where a stop string appeared
    // A thinking template's reply: its reasoning was taken out of the cache, the answer alone
    // stays in the history (the next turn processes it again). (A reply whose history form
    // differs only by the opener the template wrote for it is taken out too, without this flag.)
    bool reasoning_dropped = false;
    // With a draft model (set_draft): its drafted tokens the target evaluated, and of them kept.
    int64_t drafted = 0, accepted = 0;
  };

  // Turns the model's reasoning on or off from the next message on (ChatFormatter::set_thinking;
  // Ollama's think, llama.cpp's enable_thinking). Throws engine::Error for a template without
  // the switch.
  void set_thinking(bool on);
  bool thinking() const { return format_.thinking(); }

  // Generates the replies by speculative decoding with this draft model (engine/speculative.h),
  // in a context of its own with `options` (n_ctx at least the session's), kept in step with the
  // session's: the same replies, fewer target evaluations where the draft agrees. Throws
  // engine::Error for a draft of another tokenizer, bad parameters, or a session past its first
  // turn.
  void set_draft(std::shared_ptr<const Model> draft, const ContextOptions& options, const DraftParams& params = {});

  // Replies end where one of these strings appears in their text, which then ends before it
  // (StopStrings). Throws engine::Error for an empty string.
  void set_stop_strings(std::vector<std::string> stops);

  // Sends one user message and generates the reply (at most n_predict tokens), calling on_text
  // with each piece of text as it completes; on_text returning false stops the reply. Room for a
  // reply is min(n_predict, n_ctx / 4) tokens: with less left, earlier turns are dropped (oldest
  // first); a message that does not fit with that room even alone throws engine::Error.
  std::string send(const std::string& user, const SamplingParams& sampling, int n_predict,
                   const std::function<bool(std::string_view)>& on_text = {},
                   TurnStats* stats = nullptr);

 private:
  struct Turn {
    std::string user, reply;
  };
  // The conversation formatted anew from the system prompt, by a fresh `format`: turns_ from
  // `first` on, then `user`.
  std::vector<int32_t> reformat(size_t first, const std::string& user, ChatFormatter& format) const;

  std::shared_ptr<const Model> model_;
  Context ctx_;
  std::string warning_;  // before blank_, whose initialiser writes it
  ChatFormatter blank_;   // the template's formatter before any turn (a conversation anew)
  ChatFormatter format_;
  std::string system_;
  std::vector<ChatSegment> pending_;  // segments formatted but not yet in the cache
  std::vector<int32_t> carry_;        // a reply's last token, sampled but not yet in the cache
  std::vector<Turn> turns_;           // the finished turns, as text
  std::vector<std::string> stops_;
  bool first_ = true;
  // The draft's context and its generator; drafting_ is false once the draft fell out of step
  // (SpeculativeGenerator: a token it cannot evaluate, or its context full) until the
  // conversation is formatted anew.
  std::unique_ptr<Context> draft_ctx_;
  std::unique_ptr<SpeculativeGenerator> speculative_;
  bool drafting_ = false;
};

}  // namespace engine
