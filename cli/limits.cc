#include "cli/limits.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/numeric/int128.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace pm::cli {
namespace {

absl::Status Usage(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

bool IsDigits(absl::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c));
  });
}

// The multiplier of a size's unit ("", "b", "k", "ki", "kib", "kb", ...,
// lower case), or 0 when it is none.
uint64_t UnitMultiplier(absl::string_view unit) {
  if (unit.empty() || unit == "b") return 1;
  const absl::string_view prefixes = "kmgt";
  const size_t power = prefixes.find(unit[0]);
  if (power == absl::string_view::npos) return 0;
  const absl::string_view rest = unit.substr(1);
  if (!rest.empty() && rest != "i" && rest != "ib" && rest != "b") return 0;
  return uint64_t{1} << (10 * (power + 1));
}

// A whole number with no sign, no spaces and no other base: SimpleAtoi
// alone takes "+5", " 5" and "0x5" too.
template <typename Int>
bool ParseWhole(absl::string_view text, Int* value) {
  return !text.empty() && IsDigits(text) && absl::SimpleAtoi(text, value);
}

}  // namespace

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view flag,
                                       absl::string_view text) {
  const auto bad = [&] {
    return Usage(absl::StrCat(flag,
                              " takes a size like 256M, 1.5G or 1048576 "
                              "(bytes; K, M, G, T are binary: 1K = 1024), "
                              "not \"",
                              text, "\""));
  };
  const size_t number_end =
      std::find_if(
          text.begin(), text.end(),
          [](char c) {
            return !absl::ascii_isdigit(static_cast<unsigned char>(c)) &&
                   c != '.';
          }) -
      text.begin();
  const absl::string_view number = text.substr(0, number_end);
  const uint64_t multiplier =
      UnitMultiplier(absl::AsciiStrToLower(text.substr(number_end)));
  if (number.empty() || multiplier == 0) return bad();

  const size_t dot = number.find('.');
  const absl::string_view whole = number.substr(0, dot);
  const absl::string_view fraction =
      dot == absl::string_view::npos ? "" : number.substr(dot + 1);
  if (dot != absl::string_view::npos &&
      (fraction.empty() || !IsDigits(fraction))) {
    return bad();
  }
  if (!fraction.empty() && multiplier == 1) {
    return Usage(absl::StrCat(flag, " ", text,
                              ": a fraction needs a unit (K, M, G or T)"));
  }
  // More digits than uint64 holds is too large for any unit.
  uint64_t whole_value = 0;
  if (!whole.empty() && !ParseWhole(whole, &whole_value)) {
    return Usage(absl::StrCat(flag, " ", text, " is too large"));
  }
  // Past 18 digits a fraction adds less than a byte of a TiB.
  const absl::string_view kept = fraction.substr(0, 18);
  uint64_t fraction_value = 0;
  if (!kept.empty()) ParseWhole(kept, &fraction_value);
  absl::uint128 scale = 1;
  for (size_t i = 0; i < kept.size(); ++i) scale *= 10;

  const absl::uint128 bytes =
      absl::uint128(whole_value) * multiplier +
      absl::uint128(fraction_value) * multiplier / scale;
  if (bytes > std::numeric_limits<uint64_t>::max()) {
    return Usage(absl::StrCat(flag, " ", text, " is too large"));
  }
  if (bytes == 0) {
    return Usage(absl::StrCat(flag, " ", text,
                              " is no size (leave the flag out for no limit)"));
  }
  return absl::Uint128Low64(bytes);
}

absl::StatusOr<double> ParseCpus(absl::string_view text) {
  // Digits and one dot only: strtod would also take "inf", "nan" and "1e3".
  double cpus = 0;
  const bool plain =
      !text.empty() && std::count(text.begin(), text.end(), '.') <= 1 &&
      text != "." && std::all_of(text.begin(), text.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.';
      });
  if (!plain || !absl::SimpleAtod(text, &cpus) || !std::isfinite(cpus)) {
    return Usage(absl::StrCat(
        "--cpus takes a number of cores like 0.5 or 2, not \"", text, "\""));
  }
  if (cpus < kMinCpus || cpus > kMaxCpus) {
    return Usage(absl::StrCat("--cpus ", text, " is out of range: ", kMinCpus,
                              " to ", kMaxCpus, " cores"));
  }
  return cpus;
}

absl::StatusOr<uint32_t> ParsePids(absl::string_view text) {
  uint32_t pids = 0;
  if (!ParseWhole(text, &pids) || pids == 0) {
    return Usage(absl::StrCat("--pids takes a whole number of tasks, 1 to ",
                              std::numeric_limits<uint32_t>::max(), ", not \"",
                              text, "\""));
  }
  return pids;
}

absl::StatusOr<uint32_t> ParseIoWeight(absl::string_view text) {
  uint32_t weight = 0;
  if (!ParseWhole(text, &weight) || weight < kMinIoWeight ||
      weight > kMaxIoWeight) {
    return Usage(absl::StrCat(
        "--io-weight takes a whole number from ", kMinIoWeight, " to ",
        kMaxIoWeight, " (the kernel's default is 100), not \"", text, "\""));
  }
  return weight;
}

absl::Status AddIsolation(absl::string_view list,
                          pm::v1::StartRequest& request) {
  for (absl::string_view name : absl::StrSplit(list, ',')) {
    const std::string word =
        absl::AsciiStrToLower(absl::StripAsciiWhitespace(name));
    pm::v1::Isolation isolation = pm::v1::ISOLATION_UNSPECIFIED;
    if (word == "pid") isolation = pm::v1::ISOLATION_PID;
    if (word == "net") isolation = pm::v1::ISOLATION_NET;
    if (word == "mount") isolation = pm::v1::ISOLATION_MOUNT;
    if (isolation == pm::v1::ISOLATION_UNSPECIFIED) {
      return Usage(absl::StrCat(
          "--isolate takes a comma-separated list of pid, net and mount, not "
          "\"",
          list, "\"", word.empty() ? " (an empty name)" : ""));
    }
    const auto& isolate = request.isolate();
    if (std::find(isolate.begin(), isolate.end(), isolation) == isolate.end()) {
      request.add_isolate(isolation);
    }
  }
  return absl::OkStatus();
}

}  // namespace pm::cli
