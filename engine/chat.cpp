#include "engine/chat.h"

#include "engine/error.h"

namespace engine {

std::string_view chat_template_name(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::chatml: return "chatml";
    case ChatTemplate::llama3: return "llama3";
    case ChatTemplate::llama2: return "llama2";
    case ChatTemplate::mistral: return "mistral";
    case ChatTemplate::gemma: return "gemma";
    case ChatTemplate::deepseek_r1: return "deepseek-r1";
  }
  return "?";
}

std::optional<ChatTemplate> detect_chat_template(std::string_view j) {
  auto has = [&](std::string_view s) { return j.find(s) != std::string_view::npos; };
  if (has("<|im_start|>")) return ChatTemplate::chatml;
  if (has("<|start_header_id|>")) return ChatTemplate::llama3;
  if (has("<start_of_turn>")) return ChatTemplate::gemma;
  if (has("<｜Assistant｜>")) return ChatTemplate::deepseek_r1;
  if (has("[INST]")) return has("<<SYS>>") ? ChatTemplate::llama2 : ChatTemplate::mistral;
  return std::nullopt;
}

ChatFormatter::ChatFormatter(ChatTemplate t, bool think, bool drops_reasoning, bool thinking_switch)
    : t_(t), think_(think), drops_reasoning_(think || drops_reasoning), thinking_switch_(thinking_switch) {}

void ChatFormatter::set_thinking(bool on) {
  if (!on && !thinking_switch_) {
    throw Error("chat: the model's chat template has no enable_thinking switch (Qwen3's has): "
                "its reasoning cannot be turned off");
  }
  thinking_off_ = !on;
}

std::string_view ChatFormatter::reply_opener() const {
  if (thinking_off_) return "<think>\n\n</think>\n\n";
  return think_ ? "<think>\n" : "";
}

namespace {

// Whether the template's generation prompt ends with "<think>\n": a string literal (Jinja's
// escaped "\n" or a real newline) in which the assistant's tag is followed by it, as QwQ's
// '<|im_start|>assistant\n<think>\n' and DeepSeek-R1's '<｜Assistant｜><think>\n'. Qwen3's
// '\n<think>\n' + reasoning_content, which rewrites a past reply, does not open the turn.
bool opens_reply_with_think(std::string_view jinja) {
  for (std::string_view tag : {"assistant\\n<think>\\n", "assistant\n<think>\n", "<｜Assistant｜><think>\\n",
                               "<｜Assistant｜><think>\n"}) {
    for (size_t at = jinja.find(tag); at != std::string_view::npos; at = jinja.find(tag, at + 1)) {
      const size_t end = at + tag.size();
      if (end < jinja.size() && (jinja[end] == '\'' || jinja[end] == '"')) return true;
    }
  }
  return false;
}

}  // namespace

ChatFormatter ChatFormatter::for_template(std::string_view jinja, std::string* warning) {
  auto kind = detect_chat_template(jinja);
  if (!kind) {
    if (warning) {
      *warning = jinja.empty() ? "the model has no chat template: using ChatML"
                               : "chat template not recognised: using ChatML";
    }
    kind = ChatTemplate::chatml;
  }
  // The history keeps what follows a reply's last "</think>" where the template splits it there.
  const bool drops = jinja.find("split('</think>')") != std::string_view::npos ||
                     jinja.find("split(\"</think>\")") != std::string_view::npos;
  // Qwen3's: {%- if enable_thinking is defined and enable_thinking is false %} writes the empty
  // block; only ChatML and DeepSeek-R1 turns have a "<think>" to write.
  const bool thinking_switch = jinja.find("enable_thinking") != std::string_view::npos &&
                               (*kind == ChatTemplate::chatml || *kind == ChatTemplate::deepseek_r1);
  return ChatFormatter(*kind, opens_reply_with_think(jinja), drops, thinking_switch);
}

std::vector<ChatSegment> ChatFormatter::system(const std::string& text) {
  switch (t_) {
    case ChatTemplate::chatml:
      return {{"<|im_start|>system\n", true}, {text, false}, {"<|im_end|>\n", true}};
    case ChatTemplate::llama3:
      return {{"<|start_header_id|>system<|end_header_id|>\n\n", true}, {text, false},
              {"<|eot_id|>", true}};
    case ChatTemplate::deepseek_r1: return {{text, false}};
    case ChatTemplate::llama2:
    case ChatTemplate::mistral:
    case ChatTemplate::gemma: pending_system_ = text; return {};
  }
  return {};
}

std::vector<ChatSegment> ChatFormatter::user_turn(const std::string& text) {
  return user_turn_then(text, reply_opener());
}

std::vector<ChatSegment> ChatFormatter::user_turn_then(const std::string& text, std::string_view opener) {
  const bool first = first_user_;
  first_user_ = false;
  std::string content = text;
  std::vector<ChatSegment> out;
  switch (t_) {
    case ChatTemplate::chatml:
      out = {{"<|im_start|>user\n", true}, {content, false}, {"<|im_end|>\n<|im_start|>assistant\n", true}};
      out.back().text += opener;
      return out;
    case ChatTemplate::llama3:
      return {{"<|start_header_id|>user<|end_header_id|>\n\n", true}, {content, false},
              {"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", true}};
    case ChatTemplate::llama2:
      if (first && !pending_system_.empty()) {
        content = "<<SYS>>\n" + pending_system_ + "\n<</SYS>>\n\n" + content;
      }
      return {{first ? "[INST] " : "<s>[INST] ", true}, {content, false}, {" [/INST]", true}};
    case ChatTemplate::mistral:
      if (first && !pending_system_.empty()) content = pending_system_ + "\n\n" + content;
      return {{first ? "[INST] " : "<s>[INST] ", true}, {content, false}, {" [/INST]", true}};
    case ChatTemplate::gemma:
      if (first && !pending_system_.empty()) content = pending_system_ + "\n\n" + content;
      return {{"<start_of_turn>user\n", true}, {content, false},
              {"<end_of_turn>\n<start_of_turn>model\n", true}};
    case ChatTemplate::deepseek_r1:
      out = {{"<｜User｜>", true}, {content, false}, {"<｜Assistant｜>", true}};
      out.back().text += opener;
      return out;
  }
  return out;
}

std::string ChatFormatter::history_reply(const std::string& reply) const {
  if (!drops_reasoning_) return reply;
  const size_t end = reply.rfind("</think>");
  if (end == std::string::npos) return reply;
  const size_t answer = reply.find_first_not_of('\n', end + 8);
  return answer == std::string::npos ? std::string() : reply.substr(answer);
}

std::vector<ChatSegment> ChatFormatter::past_turn(const std::string& user, const std::string& reply) {
  std::vector<ChatSegment> out = user_turn_then(user, "");
  out.push_back({history_reply(reply), false});
  for (auto& s : end_assistant_turn()) out.push_back(std::move(s));
  return out;
}

std::vector<ChatSegment> ChatFormatter::end_assistant_turn() {
  switch (t_) {
    case ChatTemplate::chatml: return {{"<|im_end|>\n", true}};
    case ChatTemplate::llama3: return {{"<|eot_id|>", true}};
    case ChatTemplate::llama2:
    case ChatTemplate::mistral: return {{"</s>", true}};
    case ChatTemplate::gemma: return {{"<end_of_turn>\n", true}};
    case ChatTemplate::deepseek_r1: return {{"<｜end▁of▁sentence｜>", true}};
  }
  return {};
}

}  // namespace engine
