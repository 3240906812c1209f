#include "pretokenize.h"

#include "unicode.h"

namespace engine {
namespace {

// Scans code points [0, n) of one text; each match_* returns the end of its alternative's match
// at i, or i when it does not match.
class Scanner {
 public:
  explicit Scanner(const std::vector<Codepoint>& cps) : c_(cps), n_(cps.size()) {}

  size_t size() const { return n_; }
  uint32_t cp(size_t i) const { return i < n_ ? c_[i].cp : 0xFFFFFFFF; }
  bool L(size_t i) const { return i < n_ && is_letter(c_[i].cp); }
  bool N(size_t i) const { return i < n_ && is_number(c_[i].cp); }
  bool S(size_t i) const { return i < n_ && is_whitespace(c_[i].cp); }
  bool other(size_t i) const { return i < n_ && !S(i) && !L(i) && !N(i); }
  bool newline(size_t i) const { return cp(i) == '\r' || cp(i) == '\n'; }

  // 's 't 're 've 'm 'll 'd, optionally ignoring ASCII case.
  size_t contraction(size_t i, bool any_case) const {
    if (cp(i) != '\'') return i;
    auto is = [&](size_t k, char ch) {
      const uint32_t c = cp(k);
      return c == uint32_t(ch) || (any_case && c == uint32_t(ch - 'a' + 'A'));
    };
    if (is(i + 1, 's') || is(i + 1, 't') || is(i + 1, 'm') || is(i + 1, 'd')) return i + 2;
    if ((is(i + 1, 'r') && is(i + 2, 'e')) || (is(i + 1, 'v') && is(i + 2, 'e')) ||
        (is(i + 1, 'l') && is(i + 2, 'l'))) {
      return i + 3;
    }
    return i;
  }

  // ` ?X+` for a class X.
  template <typename Pred>
  size_t space_then_run(size_t i, Pred in_class) const {
    size_t j = i;
    if (cp(j) == ' ' && in_class(j + 1)) ++j;
    if (!in_class(j)) return i;
    while (in_class(j)) ++j;
    return j;
  }

  size_t whitespace_end(size_t i) const {
    size_t k = i;
    while (S(k)) ++k;
    return k;
  }

  // \s+(?!\S) then \s+: a run of whitespace, leaving its last character to the next piece when
  // more than one precedes a non-space.
  size_t whitespace(size_t i) const {
    const size_t k = whitespace_end(i);
    if (k == i) return i;
    if (k == n_ || k - i == 1) return k;
    return k - 1;
  }

 private:
  const std::vector<Codepoint>& c_;
  size_t n_;
};

void split_gpt2(const Scanner& s, std::vector<std::pair<size_t, size_t>>& out) {
  for (size_t i = 0; i < s.size();) {
    size_t j = s.contraction(i, false);
    if (j == i) j = s.space_then_run(i, [&](size_t k) { return s.L(k); });
    if (j == i) j = s.space_then_run(i, [&](size_t k) { return s.N(k); });
    if (j == i) j = s.space_then_run(i, [&](size_t k) { return s.other(k); });
    if (j == i) j = s.whitespace(i);
    if (j == i) j = i + 1;  // unreachable for valid classes; keeps every byte
    out.emplace_back(i, j);
    i = j;
  }
}

void split_llama3(const Scanner& s, size_t max_digits, std::vector<std::pair<size_t, size_t>>& out) {
  for (size_t i = 0; i < s.size();) {
    size_t j = s.contraction(i, true);
    if (j == i) {  // [^\r\n\p{L}\p{N}]?\p{L}+
      size_t k = i;
      if (!s.L(k) && !s.newline(k) && !s.N(k) && k < s.size() && s.L(k + 1)) ++k;
      if (s.L(k)) {
        while (s.L(k)) ++k;
        j = k;
      }
    }
    if (j == i && s.N(i)) {  // \p{N}{1,max}
      j = i;
      while (s.N(j) && j - i < max_digits) ++j;
    }
    if (j == i) {  //  ?[^\s\p{L}\p{N}]+[\r\n]*
      j = s.space_then_run(i, [&](size_t k) { return s.other(k); });
      if (j != i) {
        while (s.newline(j)) ++j;
      }
    }
    if (j == i && s.S(i)) {  // \s*[\r\n]+ : up to the last newline of the whitespace run
      const size_t k = s.whitespace_end(i);
      for (size_t m = k; m > i; --m) {
        if (s.newline(m - 1)) {
          j = m;
          break;
        }
      }
    }
    if (j == i) j = s.whitespace(i);  // \s+(?!\S)|\s+
    if (j == i) j = i + 1;
    out.emplace_back(i, j);
    i = j;
  }
}

}  // namespace

std::optional<PreTokenizer> find_pre_tokenizer(std::string_view name) {
  if (name == "default" || name == "gpt-2" || name == "gpt2") return PreTokenizer::gpt2;
  if (name == "llama-bpe" || name == "llama3") return PreTokenizer::llama3;
  if (name == "qwen2" || name == "deepseek-r1-qwen") return PreTokenizer::qwen2;
  if (name == "smollm") return PreTokenizer::smollm;
  return std::nullopt;
}

std::vector<std::string_view> pre_tokenize(PreTokenizer pre, std::string_view text) {
  const std::vector<Codepoint> cps = decode_utf8(text);
  std::vector<std::pair<size_t, size_t>> spans;  // code point ranges
  if (pre == PreTokenizer::smollm) {
    // \p{N} splits off every digit first; the gpt2 regex then splits each remaining run.
    size_t start = 0;
    auto flush = [&](size_t end) {
      if (end <= start) return;
      std::vector<Codepoint> part(cps.begin() + start, cps.begin() + end);
      std::vector<std::pair<size_t, size_t>> sub;
      split_gpt2(Scanner(part), sub);
      for (auto [a, b] : sub) spans.emplace_back(start + a, start + b);
    };
    for (size_t i = 0; i < cps.size(); ++i) {
      if (is_number(cps[i].cp)) {
        flush(i);
        spans.emplace_back(i, i + 1);
        start = i + 1;
      }
    }
    flush(cps.size());
  } else {
    Scanner s(cps);
    if (pre == PreTokenizer::gpt2) {
      split_gpt2(s, spans);
    } else {
      split_llama3(s, pre == PreTokenizer::llama3 ? 3 : 1, spans);
    }
  }
  std::vector<std::string_view> pieces;
  pieces.reserve(spans.size());
  for (auto [a, b] : spans) {
    const size_t begin = cps[a].offset;
    const size_t end = b < cps.size() ? cps[b].offset : text.size();
    pieces.push_back(text.substr(begin, end - begin));
  }
  return pieces;
}

}  // namespace engine
