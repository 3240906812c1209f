// StopStrings against the text it is fed, cut into random pieces: what it shows is a prefix of
// the text with no stop string in it; where a stop string occurs, the text goes on at that point
// with a stop string (the earliest, for one stop string, wherever the pieces were cut); where
// none occurs, everything is shown once flushed. Nothing is shown that could still turn into a
// stop string.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/stop_strings.h"
#include "test_support.h"

namespace engine {
namespace {

// The text fed in random pieces; what was shown, and whether a stop string matched.
std::pair<std::string, bool> run(const std::vector<std::string>& stops, const std::string& text, std::mt19937& rng) {
  StopStrings filter(stops);
  std::string shown;
  for (size_t at = 0; at < text.size() && !filter.matched();) {
    const size_t n = std::min<size_t>(1 + rng() % 5, text.size() - at);
    const std::string out = filter.push(std::string_view(text).substr(at, n));
    at += n;
    shown += out;
    // Held back: only an end that begins a stop string.
    if (!filter.matched()) {
      const std::string held = text.substr(shown.size(), at - shown.size());
      bool begins_one = held.empty();
      for (const auto& s : stops) begins_one |= held.size() < s.size() && s.compare(0, held.size(), held) == 0;
      EXPECT_TRUE(begins_one) << "held back '" << held << "' of '" << text << "'";
    }
  }
  if (!filter.matched()) shown += filter.flush();
  return {shown, filter.matched()};
}

TEST(StopStrings, ShowsThePrefixBeforeTheFirstStopWhereverThePiecesAreCut) {
  std::mt19937 rng(std::random_device{}());
  const std::string alphabet = "abc";  // small, so that stop strings occur and overlap
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::string> stops(1 + rng() % 3);
    for (auto& s : stops) {
      s.resize(1 + rng() % 4);
      for (auto& c : s) c = alphabet[rng() % alphabet.size()];
    }
    std::string text(rng() % 40, ' ');
    for (auto& c : text) c = alphabet[rng() % alphabet.size()];
    const auto [shown, matched] = run(stops, text, rng);
    ASSERT_EQ(text.compare(0, shown.size(), shown), 0) << "not a prefix: '" << shown << "' of '" << text << "'";
    size_t first = std::string::npos;
    for (const auto& s : stops) {
      EXPECT_EQ(shown.find(s), std::string::npos) << "'" << s << "' shown in '" << shown << "'";
      first = std::min(first, text.find(s));
    }
    EXPECT_EQ(matched, first != std::string::npos) << text;
    if (!matched) {
      EXPECT_EQ(shown, text);
      continue;
    }
    bool stop_follows = false;
    for (const auto& s : stops) stop_follows |= text.compare(shown.size(), s.size(), s) == 0;
    EXPECT_TRUE(stop_follows) << "'" << text << "' cut at " << shown.size();
    if (stops.size() == 1) {
      EXPECT_EQ(shown.size(), first) << text;
    }
  }
}

TEST(StopStrings, MultiByteCharactersAndTheEndOfGeneration) {
  std::mt19937 rng(std::random_device{}());
  // A stop string that starts like the text's last bytes is held until the end, then shown.
  StopStrings filter({"\xC3\xA9t\xC3\xA9"});  // "été"
  EXPECT_EQ(filter.push("caf"), "caf");
  EXPECT_EQ(filter.push("\xC3\xA9"), "");
  EXPECT_FALSE(filter.matched());
  EXPECT_EQ(filter.flush(), "\xC3\xA9");
  const auto [shown, matched] = run({"\n\nUser:"}, "Answer: 42.\n\nUser: next", rng);
  EXPECT_TRUE(matched);
  EXPECT_EQ(shown, "Answer: 42.");
  test::expect_error([] { StopStrings bad({"ok", ""}); }, {"--stop", "empty"});
}

}  // namespace
}  // namespace engine
