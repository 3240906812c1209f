#include "engine/chat_session.h"

#include <chrono>

#include "engine/error.h"

namespace engine {

static ChatFormatter formatter_for(const Model& model, std::string* warning) {
  if (!model.tokenizer()) throw Error("chat: the model has no tokenizer");
  return ChatFormatter::for_template(model.chat_template(), warning);
}

ChatSession::ChatSession(std::shared_ptr<const Model> model, const ContextOptions& options,
                         const std::string& system_prompt)
    : model_(model), ctx_(model, options), format_(formatter_for(*model, &warning_)) {
  if (!system_prompt.empty()) pending_ = format_.system(system_prompt);
}

std::string ChatSession::send(const std::string& user, const SamplingParams& sampling,
                              int n_predict, const std::function<bool(std::string_view)>& on_text,
                              TurnStats* stats) {
  const Tokenizer& tok = *model_->tokenizer();
  for (auto& s : format_.user_turn(user)) pending_.push_back(std::move(s));
  std::vector<Tokenizer::Segment> segments;
  for (const auto& s : pending_) segments.push_back({s.text, s.parse_special});
  std::vector<int32_t> prompt = carry_;
  const std::vector<int32_t> turn = tok.tokenize(segments, first_);
  prompt.insert(prompt.end(), turn.begin(), turn.end());
  carry_.clear();
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto t_first = t0;
  bool got_first = false;
  TokenStreamer stream(model_->tokenizer(), false);
  std::string reply;
  bool stopped = false;
  const auto tokens = ctx_.generate(prompt, n_predict, sampling, [&](int32_t token) {
    if (!got_first) {
      t_first = clock::now();
      got_first = true;
    }
    if (model_->is_end_of_generation(token)) return true;  // the turn's end tag is not text
    const std::string text = stream.push(token);
    reply += text;
    if (on_text && !text.empty() && !on_text(text)) {
      stopped = true;
      return false;
    }
    return true;
  });
  const std::string rest = stream.flush();
  reply += rest;
  if (on_text && !rest.empty() && !stopped) on_text(rest);
  first_ = false;
  // A reply cut off by n_predict or the caller ends on a real token the cache does not hold yet;
  // one that ended on the end-of-turn tag has it re-written by end_assistant_turn().
  if (!tokens.empty() && !model_->is_end_of_generation(tokens.back())) carry_ = {tokens.back()};
  pending_ = format_.end_assistant_turn();
  if (stats) {
    stats->prompt_tokens = prompt.size();
    stats->generated_tokens = tokens.size();
    stats->prompt_seconds = std::chrono::duration<double>(t_first - t0).count();
    stats->generation_seconds = std::chrono::duration<double>(clock::now() - t_first).count();
  }
  return reply;
}

}  // namespace engine
