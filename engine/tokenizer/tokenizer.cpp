#include "engine/tokenizer.h"

#include <algorithm>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "engine/error.h"
#include "pretokenize.h"
#include "unicode.h"

namespace engine {
namespace {

// llama.cpp's token types (tokenizer.ggml.token_type).
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// GPT-2's reversible map from bytes to printable code points.
std::vector<uint32_t> bytes_to_unicode() {
  std::vector<uint32_t> map(256);
  uint32_t extra = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    map[b] = printable ? b : extra++;
  }
  return map;
}

}  // namespace

struct Tokenizer::Impl {
  ModelFile file;  // keeps the mapping that the token texts point into
  std::string path;
  bool spm = false;
  PreTokenizer pre = PreTokenizer::gpt2;
  bool ignore_merges = false;  // Llama 3: a piece that is itself a token is not merged
  bool add_space_prefix = true;
  // SentencePiece: no token has a space mark right after another character, so no merge can
  // cross the start of a word and each word can be tokenized on its own (checked at load).
  bool spm_words_independent = false;
  bool add_bos = false, add_eos = false;
  int32_t bos = -1, eos = -1;
  std::vector<std::string_view> text;
  std::vector<float> scores;
  std::vector<int32_t> types;
  std::unordered_map<std::string_view, int32_t> ids;
  struct Merge {
    int32_t rank;
    int32_t result;  // the token the pair merges into
  };
  std::unordered_map<uint64_t, Merge> merges;  // (left id << 32 | right id) -> merge
  std::vector<int32_t> byte_token;                      // SPM: <0xNN> ids; BPE: mapped chars
  std::vector<uint32_t> byte_map;                       // BPE: byte -> code point
  std::unordered_map<uint32_t, uint8_t> unmap;          // BPE: code point -> byte
  std::vector<int32_t> specials;                        // control / user-defined / unknown, longest first
  std::unordered_set<int32_t> eog;

  int32_t id(std::string_view s) const {
    auto it = ids.find(s);
    return it == ids.end() ? -1 : it->second;
  }

  void spm_fragment(std::string_view fragment, bool prefix, std::vector<int32_t>& out) const;
  void spm_symbols(std::string_view text, std::vector<int32_t>& out) const;
  void bpe_fragment(std::string_view fragment, std::vector<int32_t>& out) const;
  void bpe_piece(std::string_view piece, std::vector<int32_t>& out) const;
};

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

std::shared_ptr<const Tokenizer> Tokenizer::from_file(const ModelFile& file) {
  std::shared_ptr<Tokenizer> t(new Tokenizer());
  Impl& m = *t->impl_;
  m.file = file;
  m.path = file.path();
  auto fail = [&](std::string_view key, std::string_view problem) {
    throw Error(fmt::format("{}: metadata '{}': {}", m.path, key, problem));
  };
  auto str = [&](const char* key) -> std::string_view {
    const GgufValue* v = file.find(key);
    return v && v->as_string() ? *v->as_string() : std::string_view();
  };
  auto integer = [&](const char* key, int64_t fallback) {
    const GgufValue* v = file.find(key);
    return v && v->as_int() ? *v->as_int() : fallback;
  };
  auto flag = [&](const char* key, bool fallback) {
    const GgufValue* v = file.find(key);
    return v && v->as_bool() ? *v->as_bool() : fallback;
  };
  const std::string_view model = str("tokenizer.ggml.model");
  if (model.empty()) fail("tokenizer.ggml.model", "missing: the file has no tokenizer");
  if (model == "llama") {
    m.spm = true;
  } else if (model != "gpt2") {
    fail("tokenizer.ggml.model", fmt::format("unsupported tokenizer '{}' (llama and gpt2 are)", model));
  }
  const GgufValue* tokens = file.find("tokenizer.ggml.tokens");
  if (tokens == nullptr || !tokens->is_array() || tokens->elem_type() != GgufValueType::string ||
      tokens->size() == 0 || tokens->size() > (1u << 24)) {
    fail("tokenizer.ggml.tokens", "missing or not an array of strings");
  }
  m.text.assign(tokens->strings().begin(), tokens->strings().end());
  const size_t n = m.text.size();
  m.scores.assign(n, 0.0f);
  m.types.assign(n, kNormal);
  if (const GgufValue* v = file.find("tokenizer.ggml.scores"); v && v->is_array() && v->size() == n) {
    for (size_t i = 0; i < n; ++i) m.scores[i] = static_cast<float>(v->float_at(i).value_or(0.0));
  }
  if (const GgufValue* v = file.find("tokenizer.ggml.token_type"); v && v->is_array() && v->size() == n) {
    for (size_t i = 0; i < n; ++i) m.types[i] = static_cast<int32_t>(v->int_at(i).value_or(kNormal));
  }
  for (size_t i = 0; i < n; ++i) m.ids.emplace(m.text[i], static_cast<int32_t>(i));  // first wins
  auto valid_id = [&](int64_t id) { return id >= 0 && id < int64_t(n) ? int32_t(id) : -1; };
  m.bos = valid_id(integer("tokenizer.ggml.bos_token_id", -1));
  m.eos = valid_id(integer("tokenizer.ggml.eos_token_id", -1));
  m.add_bos = flag("tokenizer.ggml.add_bos_token", m.spm);
  m.add_eos = flag("tokenizer.ggml.add_eos_token", false);
  m.add_space_prefix = flag("tokenizer.ggml.add_space_prefix", m.spm);
  if (m.spm) {
    m.spm_words_independent = std::none_of(m.text.begin(), m.text.end(), [](std::string_view tok_text) {
      for (size_t at = tok_text.find(kSpaceMark, 1); at != std::string_view::npos;
           at = tok_text.find(kSpaceMark, at + 1)) {
        if (at < kSpaceMark.size() ||
            tok_text.substr(at - kSpaceMark.size(), kSpaceMark.size()) != kSpaceMark) {
          return true;
        }
      }
      return false;
    });
    m.byte_token.assign(256, -1);
    for (int b = 0; b < 256; ++b) m.byte_token[b] = m.id(fmt::format("<0x{:02X}>", b));
  } else {
    const std::string_view pre_name = str("tokenizer.ggml.pre");
    auto pre = find_pre_tokenizer(pre_name.empty() ? "default" : pre_name);
    if (!pre) {
      fail("tokenizer.ggml.pre", fmt::format("unsupported pre-tokenizer '{}' (default, gpt-2, "
                                             "llama-bpe, qwen2, deepseek-r1-qwen, smollm are)",
                                             pre_name));
    }
    m.pre = *pre;
    m.ignore_merges = m.pre == PreTokenizer::llama3;
    const GgufValue* merges = file.find("tokenizer.ggml.merges");
    if (merges == nullptr || !merges->is_array() || merges->elem_type() != GgufValueType::string) {
      fail("tokenizer.ggml.merges", "missing: a gpt2 tokenizer needs its merges");
    }
    // Merges work on token ids: "a b" is usable when a, b and ab are all tokens.
    m.merges.reserve(merges->size());
    std::string joined;
    for (size_t i = 0; i < merges->size(); ++i) {
      const std::string_view rule = merges->strings()[i];
      const size_t space = rule.find(' ', 1);
      if (space == std::string_view::npos) continue;
      const int32_t a = m.id(rule.substr(0, space)), b = m.id(rule.substr(space + 1));
      joined.assign(rule.substr(0, space)).append(rule.substr(space + 1));
      const int32_t ab = m.id(joined);
      if (a < 0 || b < 0 || ab < 0) continue;
      m.merges.emplace((uint64_t(uint32_t(a)) << 32) | uint32_t(b), Impl::Merge{int32_t(i), ab});
    }
    m.byte_map = bytes_to_unicode();
    m.byte_token.assign(256, -1);
    for (int b = 0; b < 256; ++b) {
      m.unmap.emplace(m.byte_map[b], static_cast<uint8_t>(b));
      std::string s;
      append_utf8(s, m.byte_map[b]);
      m.byte_token[b] = m.id(s);
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if ((m.types[i] == kControl || m.types[i] == kUserDefined || m.types[i] == kUnknown) && !m.text[i].empty()) {
      m.specials.push_back(static_cast<int32_t>(i));
    }
  }
  std::stable_sort(m.specials.begin(), m.specials.end(),
                   [&](int32_t a, int32_t b) { return m.text[a].size() > m.text[b].size(); });
  // End of generation: the declared ids, and the turn-end control tokens of common templates.
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                          "tokenizer.ggml.eom_token_id"}) {
    if (int32_t id = valid_id(integer(key, -1)); id >= 0) m.eog.insert(id);
  }
  for (const char* text : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                           "<｜end▁of▁sentence｜>", "<|eom_id|>"}) {
    if (int32_t id = m.id(text); id >= 0 && m.types[id] == kControl) m.eog.insert(id);
  }
  return t;
}

void Tokenizer::Impl::spm_fragment(std::string_view fragment, bool prefix,
                                   std::vector<int32_t>& out) const {
  std::string buf;
  if (prefix) buf += kSpaceMark;
  for (char c : fragment) {
    if (c == ' ') {
      buf += kSpaceMark;
    } else {
      buf += c;
    }
  }
  if (!spm_words_independent) {
    spm_symbols(buf, out);
    return;
  }
  // Words (a run of space marks and what follows up to the next one) repeat: tokenize each once.
  std::unordered_map<std::string_view, std::vector<int32_t>> cache;
  const std::string_view all(buf);
  size_t start = 0;
  while (start < all.size()) {
    size_t end = start;
    while (all.substr(end, kSpaceMark.size()) == kSpaceMark) end += kSpaceMark.size();
    end = all.find(kSpaceMark, end);
    if (end == std::string_view::npos) end = all.size();
    const std::string_view word = all.substr(start, end - start);
    auto [it, fresh] = cache.try_emplace(word);
    if (fresh) spm_symbols(word, it->second);
    out.insert(out.end(), it->second.begin(), it->second.end());
    start = end;
  }
}

void Tokenizer::Impl::spm_symbols(std::string_view buf, std::vector<int32_t>& out) const {
  // Symbols start as UTF-8 characters; the highest-scoring adjacent pair whose concatenation is a
  // token merges first (leftmost on ties), until no pair is a token.
  struct Symbol {
    size_t begin, len;
    int prev, next;
  };
  std::vector<Symbol> sym;
  for (size_t i = 0; i < buf.size();) {
    const size_t len = std::min<size_t>(utf8_sequence_length(static_cast<uint8_t>(buf[i])), buf.size() - i);
    sym.push_back({i, len, static_cast<int>(sym.size()) - 1, static_cast<int>(sym.size()) + 1});
    i += len;
  }
  if (sym.empty()) return;
  sym.back().next = -1;
  struct Bigram {
    float score;
    int left;
    size_t len;
    bool operator<(const Bigram& o) const {
      return score < o.score || (score == o.score && left > o.left);
    }
  };
  std::priority_queue<Bigram> queue;
  auto try_pair = [&](int left) {
    if (left < 0 || sym[left].next < 0) return;
    const Symbol& a = sym[left];
    const Symbol& b = sym[a.next];
    const int32_t token = id(std::string_view(buf).substr(a.begin, a.len + b.len));
    if (token >= 0) queue.push({scores[token], left, a.len + b.len});
  };
  for (int i = 0; i + 1 < static_cast<int>(sym.size()); ++i) try_pair(i);
  while (!queue.empty()) {
    const Bigram top = queue.top();
    queue.pop();
    Symbol& a = sym[top.left];
    if (a.len == 0 || a.next < 0) continue;
    Symbol& b = sym[a.next];
    if (a.len + b.len != top.len) continue;  // stale: one side has merged since
    a.len += b.len;
    b.len = 0;
    a.next = b.next;
    if (a.next >= 0) sym[a.next].prev = top.left;
    try_pair(a.prev);
    try_pair(top.left);
  }
  for (int i = 0; i >= 0; i = sym[i].next) {
    const std::string_view piece = std::string_view(buf).substr(sym[i].begin, sym[i].len);
    const int32_t token = id(piece);
    if (token >= 0) {
      out.push_back(token);
      continue;
    }
    for (char c : piece) {  // byte fallback
      const int32_t b = byte_token[static_cast<uint8_t>(c)];
      if (b >= 0) out.push_back(b);
    }
  }
}

void Tokenizer::Impl::bpe_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (ignore_merges) {
    std::string whole;
    for (char c : piece) append_utf8(whole, byte_map[static_cast<uint8_t>(c)]);
    if (const int32_t token = id(whole); token >= 0) {
      out.push_back(token);
      return;
    }
  }
  // One symbol per byte (its GPT-2 code point's token), then merge the adjacent pair of lowest
  // rank (leftmost on ties) until no pair has a merge.
  std::vector<int32_t> sym;
  sym.reserve(piece.size());
  for (char c : piece) sym.push_back(byte_token[static_cast<uint8_t>(c)]);
  while (sym.size() > 1) {
    int32_t best = INT32_MAX, result = -1;
    size_t at = 0;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      if (sym[i] < 0 || sym[i + 1] < 0) continue;
      auto it = merges.find((uint64_t(uint32_t(sym[i])) << 32) | uint32_t(sym[i + 1]));
      if (it != merges.end() && it->second.rank < best) {
        best = it->second.rank;
        result = it->second.result;
        at = i;
      }
    }
    if (result < 0) break;
    sym[at] = result;
    sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(at) + 1);
  }
  for (int32_t t : sym) {
    if (t >= 0) out.push_back(t);  // a byte without a token is dropped, as llama.cpp does
  }
}

void Tokenizer::Impl::bpe_fragment(std::string_view fragment, std::vector<int32_t>& out) const {
  std::unordered_map<std::string_view, std::vector<int32_t>> cache;  // pieces repeat in text
  for (std::string_view piece : pre_tokenize(pre, fragment)) {
    auto [it, fresh] = cache.try_emplace(piece);
    if (fresh) bpe_piece(piece, it->second);
    out.insert(out.end(), it->second.begin(), it->second.end());
  }
}

std::vector<int32_t> Tokenizer::tokenize(std::string_view text, bool add_special,
                                         bool parse_special) const {
  const Segment segment{text, parse_special};
  return tokenize(std::span<const Segment>(&segment, 1), add_special);
}

std::vector<int32_t> Tokenizer::tokenize(std::span<const Segment> segments, bool add_special) const {
  const Impl& m = *impl_;
  std::vector<int32_t> out;
  if (add_special && m.add_bos && m.bos >= 0) out.push_back(m.bos);
  bool prev_special = true;  // SentencePiece adds its space prefix at the start and after specials
  auto text_fragment = [&](std::string_view fragment) {
    if (fragment.empty()) return;
    if (m.spm) {
      m.spm_fragment(fragment, m.add_space_prefix && prev_special, out);
    } else {
      m.bpe_fragment(fragment, out);
    }
    prev_special = false;
  };
  for (const Segment& seg : segments) {
    std::string_view rest = seg.text;
    // Split at the earliest occurrence of any special token allowed here (longest wins a tie).
    while (!rest.empty()) {
      size_t best_at = std::string_view::npos;
      int32_t best = -1;
      for (int32_t t : m.specials) {
        if (m.types[t] != kUserDefined && !seg.parse_special) continue;  // control and unknown (<unk>)
        const size_t at = rest.find(m.text[t]);
        if (at < best_at) {
          best_at = at;
          best = t;
        }
      }
      if (best < 0) {
        text_fragment(rest);
        break;
      }
      text_fragment(rest.substr(0, best_at));
      out.push_back(best);
      prev_special = true;
      rest.remove_prefix(best_at + m.text[best].size());
    }
  }
  if (add_special && m.add_eos && m.eos >= 0) out.push_back(m.eos);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t token, bool render_special) const {
  const Impl& m = *impl_;
  if (token < 0 || token >= static_cast<int32_t>(m.text.size())) return {};
  const std::string_view text = m.text[token];
  const int32_t type = m.types[token];
  if (type == kControl || type == kUnknown || type == kUnused) {
    return render_special ? std::string(text) : std::string();
  }
  std::string out;
  if (m.spm) {
    if (type == kByte && text.size() == 6) {
      out += static_cast<char>(std::stoi(std::string(text.substr(3, 2)), nullptr, 16));
      return out;
    }
    for (size_t i = 0; i < text.size();) {
      if (text.substr(i, kSpaceMark.size()) == kSpaceMark) {
        out += ' ';
        i += kSpaceMark.size();
      } else {
        out += text[i++];
      }
    }
    return out;
  }
  if (type == kUserDefined) return std::string(text);
  for (const Codepoint& cp : decode_utf8(text)) {
    auto it = m.unmap.find(cp.cp);
    if (it != m.unmap.end()) {
      out += static_cast<char>(it->second);
    } else {
      out.append(text.substr(cp.offset, cp.length));
    }
  }
  return out;
}

std::string Tokenizer::detokenize(std::span<const int32_t> tokens, bool render_special) const {
  std::string out;
  size_t first_piece = 0;  // bytes of the first token's piece
  for (size_t i = 0; i < tokens.size(); ++i) {
    out += token_to_piece(tokens[i], render_special);
    if (i == 0) first_piece = out.size();
  }
  // The space SentencePiece prefixed: the first token's leading space, as llama_detokenize drops
  // it (a control token first, such as BOS, keeps the next token's space, as there).
  const Impl& m = *impl_;
  if (m.spm && m.add_space_prefix && first_piece > 0 && out[0] == ' ') out.erase(0, 1);
  return out;
}

int32_t Tokenizer::n_tokens() const { return static_cast<int32_t>(impl_->text.size()); }
int32_t Tokenizer::bos() const { return impl_->bos; }
int32_t Tokenizer::eos() const { return impl_->eos; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::is_end_of_generation(int32_t token) const { return impl_->eog.count(token) > 0; }
int32_t Tokenizer::find(std::string_view token_text) const { return impl_->id(token_text); }
std::string_view Tokenizer::model() const { return impl_->spm ? "llama" : "gpt2"; }

TokenStreamer::TokenStreamer(std::shared_ptr<const Tokenizer> tokenizer, bool strip_leading_space)
    : tok_(std::move(tokenizer)), strip_(strip_leading_space) {}

std::string TokenStreamer::push(int32_t token) {
  std::string piece = tok_->token_to_piece(token);
  if (strip_) {  // only the first token's own space, as detokenize drops it
    if (!piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    strip_ = false;
  }
  pending_ += piece;
  // Emit everything up to the start of a trailing incomplete UTF-8 sequence.
  size_t keep = pending_.size();
  for (size_t back = 1; back <= std::min<size_t>(4, pending_.size()); ++back) {
    const auto c = static_cast<uint8_t>(pending_[pending_.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    if (utf8_sequence_length(c) > static_cast<int>(back)) keep = pending_.size() - back;
    break;
  }
  std::string ready = pending_.substr(0, keep);
  pending_.erase(0, keep);
  return ready;
}

std::string TokenStreamer::flush() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace engine
