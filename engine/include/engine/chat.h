// Chat formatting for the common template families, recognised from tokenizer.chat_template and
// applied without running the Jinja template: ChatML (Qwen, QwQ), Llama 3, Llama 2, Mistral,
// Gemma, DeepSeek-R1. Messages become segments, so the template's tags are tokenized with
// special-token parsing on and the users' text with it off (text can never become a tag).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace engine {

enum class ChatTemplate { chatml, llama3, llama2, mistral, gemma, deepseek_r1 };

std::string_view chat_template_name(ChatTemplate t);

// The family a Jinja chat template belongs to; nullopt when none is recognised.
std::optional<ChatTemplate> detect_chat_template(std::string_view jinja);

struct ChatSegment {
  std::string text;
  bool parse_special;  // true for the template's own tags
};

// Formats a conversation incrementally: each call returns only the segments that follow what
// was formatted before, so a context can keep its KV cache across turns.
class ChatFormatter {
 public:
  // think: the template opens the assistant's turn with "<think>\n" (QwQ, DeepSeek-R1), and
  // leaves a reply's reasoning out of the history. drops_reasoning alone: the history keeps only
  // what follows a reply's last "</think>", but the model opens its reasoning itself (Qwen3).
  // thinking_switch: the template reads enable_thinking (Qwen3), so set_thinking(false) works.
  ChatFormatter(ChatTemplate t, bool think) : ChatFormatter(t, think, think) {}
  ChatFormatter(ChatTemplate t, bool think, bool drops_reasoning, bool thinking_switch = false);
  static ChatFormatter for_template(std::string_view jinja, std::string* warning);

  ChatTemplate kind() const { return t_; }
  // Whether the assistant's reply opens with "<think>\n", written by the template.
  bool thinks() const { return think_; }
  // Whether the history leaves a reply's reasoning out (history_reply).
  bool drops_reasoning() const { return drops_reasoning_; }
  // Whether the template can turn the model's reasoning off (enable_thinking=false).
  bool has_thinking_switch() const { return thinking_switch_; }
  // Off: the reply opens with an empty "<think>\n\n</think>\n\n", as Qwen3's template writes it
  // for enable_thinking=false, so the model answers at once. Throws engine::Error for a template
  // without the switch. Takes effect from the next user_turn.
  void set_thinking(bool on);
  bool thinking() const { return !thinking_off_; }
  // What the generation prompt writes after the assistant's tag, for the reply alone (the history
  // leaves it out): "<think>\n" (thinks()), the empty block with thinking off, or nothing.
  std::string_view reply_opener() const;
  // The system prompt (some templates fold it into the first user turn).
  std::vector<ChatSegment> system(const std::string& text);
  // A user turn followed by the prompt that opens the assistant's reply.
  std::vector<ChatSegment> user_turn(const std::string& text);
  // Closes an assistant reply the model has just generated (its end-of-turn tag is sampled but
  // not yet in the cache).
  std::vector<ChatSegment> end_assistant_turn();
  // A finished exchange as the template writes it in the history: the user turn, the reply
  // (history_reply) and its end, with no "<think>\n" opening the reply.
  std::vector<ChatSegment> past_turn(const std::string& user, const std::string& reply);
  // A reply as the history holds it: where the template drops reasoning, what follows its last
  // "</think>", newlines at the start dropped (as QwQ's, DeepSeek-R1's and Qwen3's templates do);
  // else the reply.
  std::string history_reply(const std::string& reply) const;

 private:
  // A user turn and the assistant's tag, followed by `opener` (the generation prompt's, or none
  // for a past turn).
  std::vector<ChatSegment> user_turn_then(const std::string& text, std::string_view opener);

  ChatTemplate t_;
  bool think_;
  bool drops_reasoning_;
  bool thinking_switch_;
  bool thinking_off_ = false;
  bool first_user_ = true;
  std::string pending_system_;
};

}  // namespace engine
