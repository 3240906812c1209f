#include "engine/chat_session.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "engine/error.h"

namespace engine {

static ChatFormatter formatter_for(const Model& model, std::string* warning) {
  if (!model.tokenizer()) throw Error("chat: the model has no tokenizer");
  return ChatFormatter::for_template(model.chat_template(), warning);
}

ChatSession::ChatSession(std::shared_ptr<const Model> model, const ContextOptions& options,
                         const std::string& system_prompt)
    : model_(model), ctx_(model, options), blank_(formatter_for(*model, &warning_)), format_(blank_),
      system_(system_prompt) {
  if (!system_prompt.empty()) pending_ = format_.system(system_prompt);
}

void ChatSession::set_thinking(bool on) {
  blank_.set_thinking(on);  // throws for a template without the switch
  format_.set_thinking(on);
}

void ChatSession::set_draft(std::shared_ptr<const Model> draft, const ContextOptions& options,
                             const DraftParams& params) {
  if (!first_) throw Error("chat: a draft model must be set before the first message");
  auto ctx = std::make_unique<Context>(draft, options);
  if (ctx->n_ctx() < ctx_.n_ctx()) {
    throw Error(fmt::format("chat: the draft's context of {} is shorter than the session's {}", ctx->n_ctx(),
                            ctx_.n_ctx()));
  }
  auto speculative = std::make_unique<SpeculativeGenerator>(ctx_, *ctx, params);  // checks the pair
  draft_ctx_ = std::move(ctx);
  speculative_ = std::move(speculative);
  drafting_ = true;
}

void ChatSession::set_stop_strings(std::vector<std::string> stops) {
  StopStrings{stops};  // throws for an empty one
  stops_ = std::move(stops);
}

std::vector<int32_t> ChatSession::reformat(size_t first, const std::string& user, ChatFormatter& format) const {
  format = blank_;
  std::vector<ChatSegment> all;
  auto add = [&all](std::vector<ChatSegment> segments) {
    for (auto& s : segments) all.push_back(std::move(s));
  };
  if (!system_.empty()) add(format.system(system_));
  for (size_t t = first; t < turns_.size(); ++t) add(format.past_turn(turns_[t].user, turns_[t].reply));
  add(format.user_turn(user));
  std::vector<Tokenizer::Segment> segments;
  for (const auto& s : all) segments.push_back({s.text, s.parse_special});
  return model_->tokenizer()->tokenize(segments, true);
}

std::string ChatSession::send(const std::string& user, const SamplingParams& sampling,
                              int n_predict, const std::function<bool(std::string_view)>& on_text,
                              TurnStats* stats) {
  // The turn after what the cache holds: the previous reply's end (or the system prompt), then
  // this message; taken into the session only once it fits.
  ChatFormatter format = format_;
  std::vector<ChatSegment> pending = pending_;
  for (auto& s : format.user_turn(user)) pending.push_back(std::move(s));
  std::vector<Tokenizer::Segment> segments;
  for (const auto& s : pending) segments.push_back({s.text, s.parse_special});
  std::vector<int32_t> prompt = carry_;
  const std::vector<int32_t> turn = model_->tokenizer()->tokenize(segments, first_);
  prompt.insert(prompt.end(), turn.begin(), turn.end());
  const uint64_t n_ctx = ctx_.n_ctx();
  const uint64_t reply_room = std::min<uint64_t>(std::max(n_predict, 1), std::max<uint64_t>(n_ctx / 4, 1));
  size_t dropped = 0;
  if (ctx_.n_past() + prompt.size() + reply_room > n_ctx) {
    // Formatted anew from the system prompt, the oldest turns left out until the rest fits.
    for (dropped = turns_.empty() ? 0 : 1;; ++dropped) {
      prompt = reformat(dropped, user, format);
      if (prompt.size() + reply_room <= n_ctx) break;
      if (dropped == turns_.size()) {
        throw Error(fmt::format("chat: the message takes {} tokens with the system prompt and the template; "
                                "with room for a reply ({}) that exceeds the context of {} (--ctx)",
                                prompt.size(), reply_room, n_ctx));
      }
    }
    ctx_.reset();
    if (draft_ctx_) {
      draft_ctx_->reset();
      drafting_ = true;
    }
  }
  format_ = std::move(format);
  carry_.clear();
  const uint64_t reply_at = ctx_.n_past() + prompt.size();  // the reply's first position
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto t_first = t0;
  bool got_first = false;
  TokenStreamer stream(model_->tokenizer(), false);
  StopStrings stops(stops_);
  std::string reply;
  bool stopped = false;
  // Speculative while the draft holds what the session's context holds.
  const bool speculative = drafting_ && draft_ctx_->n_past() == ctx_.n_past();
  drafting_ = speculative;
  const SpeculativeStats before = speculative_ ? speculative_->stats() : SpeculativeStats{};
  auto on_token = [&](int32_t token) {
    if (!got_first) {
      t_first = clock::now();
      got_first = true;
    }
    if (model_->is_end_of_generation(token)) return true;  // the turn's end tag is not text
    const std::string text = stops.push(stream.push(token));
    reply += text;
    if (on_text && !text.empty() && !on_text(text)) {
      stopped = true;
      return false;
    }
    return !stops.matched();
  };
  const auto tokens = speculative ? speculative_->generate(prompt, n_predict, sampling, on_token)
                                  : ctx_.generate(prompt, n_predict, sampling, on_token);
  const StopReason stop = speculative ? speculative_->last_stop() : ctx_.last_stop();
  const std::string rest = stops.push(stream.flush()) + stops.flush();
  reply += rest;
  if (on_text && !rest.empty() && !stopped) on_text(rest);
  first_ = false;
  // A reply cut off by n_predict or the caller ends on a real token the cache does not hold yet;
  // one that ended on the end-of-turn tag has it re-written by end_assistant_turn().
  if (!tokens.empty() && !model_->is_end_of_generation(tokens.back())) carry_ = {tokens.back()};
  pending_ = format_.end_assistant_turn();
  turns_.push_back({user, reply});
  // The history holds a reply as the template writes a past one: without its reasoning where the
  // template drops it, and without the opener ("<think>\n", or the empty block with thinking off)
  // the generation prompt wrote for it alone. Where they differ, the cache goes back to where the
  // opener began and the next turn takes the reply's history form again.
  const std::string answer = format_.history_reply(reply);
  const std::string_view opener_text = format_.reply_opener();
  bool reasoning_dropped = false;
  if ((answer.size() != reply.size() || !opener_text.empty()) && stop != StopReason::context_full) {
    uint64_t reply_start = reply_at;
    bool found = true;
    if (!opener_text.empty()) {
      const std::vector<Tokenizer::Segment> segs = {{opener_text, true}};  // a view of a literal
      const std::vector<int32_t> opener = model_->tokenizer()->tokenize(segs, false);
      found = prompt.size() >= opener.size() && std::equal(opener.begin(), opener.end(), prompt.end() - opener.size());
      reply_start -= opener.size();
    }
    if (found) {
      ctx_.truncate(static_cast<uint32_t>(reply_start));
      if (draft_ctx_) draft_ctx_->truncate(std::min(draft_ctx_->n_past(), static_cast<uint32_t>(reply_start)));
      carry_.clear();
      pending_ = {{answer, false}};
      for (auto& seg : format_.end_assistant_turn()) pending_.push_back(std::move(seg));
      reasoning_dropped = answer.size() != reply.size();
    }
  }
  if (stats) {
    stats->prompt_tokens = prompt.size();
    stats->generated_tokens = tokens.size();
    stats->dropped_turns = dropped;
    stats->stop = stop;
    if (speculative_) {
      stats->drafted = speculative_->stats().drafted - before.drafted;
      stats->accepted = speculative_->stats().accepted - before.accepted;
    }
    stats->stop_string = stops.matched();
    stats->reasoning_dropped = reasoning_dropped;
    stats->prompt_seconds = std::chrono::duration<double>(t_first - t0).count();
    stats->generation_seconds = std::chrono::duration<double>(clock::now() - t_first).count();
  }
  return reply;
}

}  // namespace engine
