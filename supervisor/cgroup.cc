#include "supervisor/cgroup.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/status.h"

namespace pm::supervisor {
namespace {

// The v1 controllers a mount's super options may name.
const std::set<std::string>& KnownV1Controllers() {
  static const auto* known = new std::set<std::string>{
      "blkio",   "cpu",      "cpuacct", "cpuset",     "debug",
      "devices", "freezer",  "hugetlb", "memory",     "misc",
      "net_cls", "net_prio", "perf_event", "pids",    "rdma"};
  return *known;
}

// The CFS period pm uses for CPU quotas (the kernel's default).
constexpr int64_t kCpuPeriodUsec = 100000;

// Decodes the octal escapes of /proc/PID/mountinfo ("\040" is a space).
std::string UnescapeMountField(absl::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      int value = 0;
      bool octal = true;
      for (size_t j = i + 1; j <= i + 3; ++j) {
        if (field[j] < '0' || field[j] > '7') {
          octal = false;
          break;
        }
        value = value * 8 + (field[j] - '0');
      }
      if (octal) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

// Writes `value` to an existing cgroup file in one write(2), as the kernel
// wants. Errors: `write("/sys/.../memory.max", "12"): Invalid argument
// (EINVAL)`.
absl::Status WriteCgroupFile(const std::string& path, absl::string_view value) {
  auto error = [&](int err) {
    return ErrnoStatus(absl::StrCat("write(\"", path, "\", \"", value, "\")"),
                       err);
  };
  Fd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return error(errno);
  ssize_t n = write(fd.get(), value.data(), value.size());
  if (n != static_cast<ssize_t>(value.size())) return error(n < 0 ? errno : EIO);
  return absl::OkStatus();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// mkdir -p for the components of `dir` below `base` (which exists).
absl::Status MakeDirs(const std::string& base, const std::string& dir) {
  std::string path = base;
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(dir).substr(base.size()), '/',
                      absl::SkipEmpty())) {
    absl::StrAppend(&path, "/", part);
    if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoError("mkdir", path);
    }
  }
  return absl::OkStatus();
}

std::string JoinCgroupPath(absl::string_view parent, absl::string_view child) {
  if (parent == "/") return absl::StrCat("/", child);
  return absl::StrCat(parent, "/", child);
}

std::string HierarchyKey(const CgroupMount& mount) {
  return mount.version == 2 ? std::string() : absl::StrJoin(mount.controllers, ",");
}

bool HasController(const CgroupMount& mount, absl::string_view controller) {
  return std::find(mount.controllers.begin(), mount.controllers.end(),
                   controller) != mount.controllers.end();
}

std::string Describe(const CgroupMount& mount) {
  return mount.version == 2
             ? absl::StrCat("cgroup2 at ", mount.mount_point)
             : absl::StrCat("cgroup v1 ", absl::StrJoin(mount.controllers, ","),
                            " at ", mount.mount_point);
}

// Whether `path` is absolute with no empty ("//", a trailing '/'), "." or
// ".." component: how Create spells a directory, and nothing else.
bool IsPlainAbsolutePath(absl::string_view path) {
  if (!absl::ConsumePrefix(&path, "/")) return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char* real = realpath(path.c_str(), nullptr);
  if (real == nullptr) return ErrnoError("realpath", path);
  std::string out(real);
  free(real);
  return out;
}

// "cgroup2 /a/b, memory /c/d" for messages.
std::string Describe(const CgroupDirs& dirs) {
  std::vector<std::string> parts;
  if (!dirs.unified.empty()) parts.push_back("cgroup2 " + dirs.unified);
  for (const auto& [controller, dir] : dirs.v1) {
    parts.push_back(absl::StrCat(controller, " ", dir));
  }
  return parts.empty() ? "none" : absl::StrJoin(parts, ", ");
}

absl::Status RefuseDir(const std::string& dir, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("cgroup directory \"", dir, "\" ", why));
}

int PidfdOpen(pid_t pid) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

}  // namespace

absl::StatusOr<CgroupMode> ParseCgroupMode(absl::string_view text) {
  if (text == "auto") return CgroupMode::kAuto;
  if (text == "v2") return CgroupMode::kV2;
  if (text == "v1") return CgroupMode::kV1;
  if (text == "off") return CgroupMode::kOff;
  return absl::InvalidArgumentError(absl::StrCat(
      "cgroup mode \"", text, "\": want auto, v2, v1 or off"));
}

std::vector<CgroupMount> ParseCgroupMounts(absl::string_view mountinfo) {
  std::vector<CgroupMount> mounts;
  for (absl::string_view line :
       absl::StrSplit(mountinfo, '\n', absl::SkipEmpty())) {
    // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE
    // SOURCE SUPER_OPTIONS
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    size_t separator = 6;
    while (separator < fields.size() && fields[separator] != "-") ++separator;
    if (fields.size() < 5 || separator + 3 >= fields.size()) continue;
    const absl::string_view fstype = fields[separator + 1];
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    CgroupMount mount;
    mount.version = fstype == "cgroup2" ? 2 : 1;
    mount.root = UnescapeMountField(fields[3]);
    mount.mount_point = UnescapeMountField(fields[4]);
    if (mount.version == 1) {
      for (absl::string_view option : absl::StrSplit(fields[separator + 3], ',')) {
        if (KnownV1Controllers().count(std::string(option)) > 0 ||
            absl::StartsWith(option, "name=")) {
          mount.controllers.emplace_back(option);
        }
      }
      std::sort(mount.controllers.begin(), mount.controllers.end());
      if (mount.controllers.empty()) continue;
    }
    mounts.push_back(std::move(mount));
  }
  return mounts;
}

std::map<std::string, std::string> ParseProcCgroup(absl::string_view text) {
  std::map<std::string, std::string> paths;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    // hierarchy-ID:controller-list:cgroup-path; the path may hold ':'.
    std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3 || parts[2].empty()) continue;
    std::vector<std::string> controllers =
        absl::StrSplit(parts[1], ',', absl::SkipEmpty());
    std::sort(controllers.begin(), controllers.end());
    paths[absl::StrJoin(controllers, ",")] = std::string(parts[2]);
  }
  return paths;
}

// --- Cgroups ------------------------------------------------------------------

std::string CgroupStackTag(const std::string& state_dir) {
  std::string path = state_dir;
  if (char* real = realpath(state_dir.c_str(), nullptr); real != nullptr) {
    path = real;
    free(real);
  }
  // FNV-1a: stable across builds and runs (absl::Hash is seeded per
  // process). Two stacks whose tags collide (48 bits) sweep each other's
  // leftovers as if untagged.
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : path) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return absl::StrFormat("s%012x", hash & 0xffffffffffffull);
}

Cgroups::Cgroups(CgroupOptions options) : options_(std::move(options)) {}
Cgroups::~Cgroups() = default;

std::unique_ptr<Cgroups> Cgroups::Init(const CgroupOptions& options,
                                       bool remove_leftovers) {
  CgroupOptions resolved = options;
  if (resolved.name_prefix.empty()) {
    resolved.name_prefix = resolved.stack.empty()
                               ? absl::StrCat(getpid(), ".")
                               : absl::StrCat(resolved.stack, ".", getpid(), ".");
  }
  std::unique_ptr<Cgroups> cgroups(new Cgroups(std::move(resolved)));
  cgroups->Detect();
  if (remove_leftovers) cgroups->RemoveLeftovers();
  return cgroups;
}

void Cgroups::RemoveLeftovers(const absl::flat_hash_set<std::string>& keep) const {
  for (const Hierarchy& h : hierarchies_) {
    DIR* dir = opendir(h.parent_dir.c_str());
    if (dir == nullptr) continue;
    std::vector<std::string> names;
    while (struct dirent* entry = readdir(dir)) {
      if (entry->d_type == DT_DIR) names.push_back(entry->d_name);
    }
    closedir(dir);
    for (const std::string& name : names) {
      // Ours are "<stack>.<pid>.<n>" (and "<stack>.<pid>.<n>.probe"), or
      // "<pid>.<n>" from a build without tags: a live pid is a supervisor
      // still running (maybe another one sharing the parent). A name with
      // another stack's tag is that stack's to sweep.
      absl::string_view rest = name;
      if (!options_.stack.empty()) {
        absl::ConsumePrefix(&rest, absl::StrCat(options_.stack, "."));
      }
      const size_t dot = rest.find('.');
      pid_t owner = 0;
      if (dot == absl::string_view::npos ||
          !absl::SimpleAtoi(rest.substr(0, dot), &owner) || owner <= 0 ||
          owner == getpid() || kill(owner, 0) == 0 || errno != ESRCH) {
        continue;
      }
      const std::string path = absl::StrCat(h.parent_dir, "/", name);
      if (keep.contains(path)) continue;
      if (rmdir(path.c_str()) == 0) {
        PM_LOG(INFO) << "removed cgroup " << path
                     << " left by a supervisor that is gone";
      } else {
        PM_LOG(WARNING) << "cgroup " << path
                        << " was left by a supervisor that is gone: "
                        << ErrnoError("rmdir", path);
      }
    }
  }
}

void Cgroups::Detect() {
  auto disable = [&](std::string reason) {
    disabled_reason_ = std::move(reason);
    hierarchies_.clear();
    tracker_.reset();
    BuildSummary();
  };
  if (options_.mode == CgroupMode::kOff) {
    disable("cgroups are off (--cgroups=off)");
    return;
  }
  absl::StatusOr<std::string> mountinfo =
      ReadFile(options_.proc_self + "/mountinfo");
  absl::StatusOr<std::string> self = ReadFile(options_.proc_self + "/cgroup");
  if (!mountinfo.ok() || !self.ok()) {
    disable(std::string(
        (!mountinfo.ok() ? mountinfo.status() : self.status()).message()));
    return;
  }
  const std::vector<CgroupMount> mounts = ParseCgroupMounts(*mountinfo);
  const std::map<std::string, std::string> own = ParseProcCgroup(*self);

  // Tracking: cgroup2 where it is mounted, else the v1 freezer.
  std::vector<std::string> tracking_failures;
  if (options_.mode != CgroupMode::kV1) {
    auto v2 = std::find_if(mounts.begin(), mounts.end(),
                           [](const CgroupMount& m) { return m.version == 2; });
    if (v2 == mounts.end()) {
      tracking_failures.push_back("no cgroup2 is mounted");
    } else if (absl::StatusOr<int> index = AddHierarchy(*v2, own); index.ok()) {
      tracker_ = *index;
    } else {
      tracking_failures.push_back(
          absl::StrCat(Describe(*v2), ": ", index.status().message()));
    }
  }
  if (!tracker_ && options_.mode != CgroupMode::kV2) {
    auto freezer = std::find_if(
        mounts.begin(), mounts.end(), [](const CgroupMount& m) {
          return m.version == 1 && HasController(m, "freezer");
        });
    if (freezer == mounts.end()) {
      tracking_failures.push_back("no cgroup v1 freezer is mounted");
    } else if (absl::StatusOr<int> index = AddHierarchy(*freezer, own);
               index.ok()) {
      tracker_ = *index;
    } else {
      tracking_failures.push_back(
          absl::StrCat(Describe(*freezer), ": ", index.status().message()));
    }
  }
  if (!tracker_) {
    disable(absl::StrCat("cannot make cgroups: ",
                         absl::StrJoin(tracking_failures, "; ")));
    return;
  }
  if (hierarchies_[*tracker_].mount.version == 2) {
    EnableV2Controllers(hierarchies_[*tracker_]);
  }
  PickLimitTargets(mounts, own);
  Probe();
  if (!tracker_) {
    disable(disabled_reason_);
    return;
  }
  BuildSummary();
}

absl::StatusOr<int> Cgroups::AddHierarchy(
    const CgroupMount& mount, const std::map<std::string, std::string>& own) {
  for (size_t i = 0; i < hierarchies_.size(); ++i) {
    if (hierarchies_[i].mount.mount_point == mount.mount_point) {
      return static_cast<int>(i);
    }
  }
  auto it = own.find(HierarchyKey(mount));
  if (it == own.end()) {
    return absl::NotFoundError(
        "the supervisor is in no cgroup of it (no line in /proc/self/cgroup)");
  }
  Hierarchy h;
  h.mount = mount;
  h.parent_path =
      options_.parent.empty() ? JoinCgroupPath(it->second, "pm") : options_.parent;
  if (!absl::StartsWith(h.parent_path, "/")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cgroup parent \"", h.parent_path, "\" is not an absolute cgroup path"));
  }
  // The mount shows the subtree at mount.root; the parent must be in it.
  absl::string_view relative = h.parent_path;
  if (mount.root != "/") {
    if (!absl::ConsumePrefix(&relative, mount.root) ||
        (!relative.empty() && relative[0] != '/')) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cgroup ", h.parent_path, " is outside the subtree ", mount.root,
          " mounted there"));
    }
  }
  h.parent_dir = absl::StrCat(mount.mount_point, relative);
  PM_RETURN_IF_ERROR(MakeDirs(mount.mount_point, h.parent_dir));
  hierarchies_.push_back(std::move(h));
  return static_cast<int>(hierarchies_.size() - 1);
}

void Cgroups::EnableV2Controllers(const Hierarchy& v2) {
  // Our parent may hand down only what its own parent enabled for it; that
  // is listed in its cgroup.controllers. We enable those for our children.
  absl::StatusOr<std::string> available =
      ReadFile(v2.parent_dir + "/cgroup.controllers");
  if (!available.ok()) return;
  std::set<std::string> offered =
      absl::StrSplit(absl::StripAsciiWhitespace(*available), ' ',
                     absl::SkipEmpty());
  for (const char* controller : {"memory", "cpu", "pids", "io"}) {
    if (offered.count(controller) == 0) continue;
    absl::Status enabled =
        WriteCgroupFile(v2.parent_dir + "/cgroup.subtree_control",
                        absl::StrCat("+", controller));
    if (enabled.ok()) {
      v2_enabled_.push_back(controller);
    } else {
      PM_LOG(WARNING) << "cgroups: cannot enable the " << controller
                      << " controller: " << enabled;
    }
  }
}

void Cgroups::PickLimitTargets(const std::vector<CgroupMount>& mounts,
                               const std::map<std::string, std::string>& own) {
  const bool tracker_v2 = hierarchies_[*tracker_].mount.version == 2;
  auto pick = [&](LimitTarget& target, const std::string& v2_name,
                  const std::string& v1_name) {
    if (tracker_v2 && std::count(v2_enabled_.begin(), v2_enabled_.end(), v2_name)) {
      target.hierarchy = *tracker_;
      return;
    }
    std::vector<std::string> why;
    if (tracker_v2) {
      why.push_back(absl::StrCat(
          "cgroup2 offers no ", v2_name, " controller under ",
          hierarchies_[*tracker_].parent_dir,
          " (not in its cgroup.controllers: the cgroup above has not enabled "
          "it in its cgroup.subtree_control)"));
    }
    if (options_.mode == CgroupMode::kV2) {
      why.push_back("cgroup v1 is not used (--cgroups=v2)");
    } else {
      auto v1 = std::find_if(mounts.begin(), mounts.end(),
                             [&](const CgroupMount& m) {
                               return m.version == 1 && HasController(m, v1_name);
                             });
      if (v1 == mounts.end()) {
        why.push_back(absl::StrCat("no cgroup v1 ", v1_name, " is mounted"));
      } else if (absl::StatusOr<int> index = AddHierarchy(*v1, own); index.ok()) {
        target.hierarchy = *index;
        return;
      } else {
        why.push_back(
            absl::StrCat(Describe(*v1), ": ", index.status().message()));
      }
    }
    target.missing = absl::StrJoin(why, "; and ");
  };
  pick(memory_, "memory", "memory");
  pick(cpu_, "cpu", "cpu");
  pick(pids_, "pids", "pids");
  pick(io_, "io", "blkio");
  // Pure v1: CPU time comes from cpuacct (cgroup2 counts it everywhere).
  if (!tracker_v2) {
    auto cpuacct = std::find_if(mounts.begin(), mounts.end(),
                                [](const CgroupMount& m) {
                                  return m.version == 1 && HasController(m, "cpuacct");
                                });
    if (cpuacct != mounts.end()) AddHierarchy(*cpuacct, own).IgnoreError();
  }
}

void Cgroups::Probe() {
  // Which files a new cgroup has is the only sure answer to "can this limit
  // be set" (a controller may be there without, e.g., weights).
  const std::string name = absl::StrCat(options_.name_prefix, "probe");
  std::vector<std::string> dirs(hierarchies_.size());
  for (size_t i = 0; i < hierarchies_.size(); ++i) {
    const std::string dir = absl::StrCat(hierarchies_[i].parent_dir, "/", name);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      absl::Status status = ErrnoError("mkdir", dir);
      if (tracker_ && static_cast<int>(i) == *tracker_) {
        disabled_reason_ = absl::StrCat("cannot make cgroups: ", status.message());
        tracker_.reset();
      }
      for (LimitTarget* target : {&memory_, &cpu_, &pids_, &io_}) {
        if (target->hierarchy == static_cast<int>(i)) {
          target->hierarchy = -1;
          target->missing = std::string(status.message());
        }
      }
      continue;
    }
    dirs[i] = dir;
  }
  auto has = [&](int index, const std::string& file) {
    return !dirs[index].empty() && FileExists(dirs[index] + "/" + file);
  };
  auto is_v2 = [&](int index) { return hierarchies_[index].mount.version == 2; };
  // Picks the first file of `candidates` the probe has, else explains.
  auto require = [&](LimitTarget& target,
                     const std::vector<std::string>& v2_files,
                     const std::vector<std::string>& v1_files) {
    if (!target.ok()) return;
    const auto& files = is_v2(target.hierarchy) ? v2_files : v1_files;
    for (const std::string& file : files) {
      if (has(target.hierarchy, file)) {
        target.file = file;
        return;
      }
    }
    target.missing = absl::StrCat(
        "a new cgroup under ", hierarchies_[target.hierarchy].parent_dir,
        " has no ", absl::StrJoin(files, " or "));
    target.hierarchy = -1;
  };
  if (tracker_) {
    const int t = *tracker_;
    if (is_v2(t)) {
      has_cgroup_kill_ = has(t, "cgroup.kill");
    } else if (!has(t, "freezer.state")) {
      disabled_reason_ = absl::StrCat("cannot make cgroups: a new cgroup under ",
                                      hierarchies_[t].parent_dir,
                                      " has no freezer.state");
      tracker_.reset();
    }
  }
  require(memory_, {"memory.max"}, {"memory.limit_in_bytes"});
  if (memory_.ok()) {
    const std::string swap =
        is_v2(memory_.hierarchy) ? "memory.swap.max" : "memory.memsw.limit_in_bytes";
    if (has(memory_.hierarchy, swap)) memory_swap_file_ = swap;
  }
  require(cpu_, {"cpu.max"}, {"cpu.cfs_quota_us"});
  require(pids_, {"pids.max"}, {"pids.max"});
  require(io_, {"io.weight", "io.bfq.weight"}, {"blkio.weight", "blkio.bfq.weight"});
  if (io_.ok() && io_.file != "io.weight") io_weight_max_ = 1000;

  for (size_t i = hierarchies_.size(); i-- > 0;) {
    if (!dirs[i].empty() && rmdir(dirs[i].c_str()) != 0) {
      PM_LOG(WARNING) << "cgroups: " << ErrnoError("rmdir", dirs[i]);
    }
  }
  // Join only the hierarchies something needs: the tracker, the limits'
  // and, on pure v1, cpuacct for CPU time.
  std::vector<Hierarchy> used;
  std::vector<int> remap(hierarchies_.size(), -1);
  for (size_t i = 0; i < hierarchies_.size(); ++i) {
    bool needed = (tracker_ && static_cast<int>(i) == *tracker_) ||
                  HasController(hierarchies_[i].mount, "cpuacct") ||
                  memory_.hierarchy == static_cast<int>(i) ||
                  cpu_.hierarchy == static_cast<int>(i) ||
                  pids_.hierarchy == static_cast<int>(i) ||
                  io_.hierarchy == static_cast<int>(i);
    if (!needed) continue;
    remap[i] = static_cast<int>(used.size());
    used.push_back(std::move(hierarchies_[i]));
  }
  hierarchies_ = std::move(used);
  if (tracker_) tracker_ = remap[*tracker_];
  for (LimitTarget* target : {&memory_, &cpu_, &pids_, &io_}) {
    if (target->ok()) target->hierarchy = remap[target->hierarchy];
  }
  // The tracker goes first: it is the one a process is born in.
  if (tracker_ && *tracker_ != 0) {
    const int t = *tracker_;
    std::swap(hierarchies_[0], hierarchies_[t]);
    for (LimitTarget* target : {&memory_, &cpu_, &pids_, &io_}) {
      if (target->hierarchy == 0) {
        target->hierarchy = t;
      } else if (target->hierarchy == t) {
        target->hierarchy = 0;
      }
    }
    tracker_ = 0;
  }
}

void Cgroups::BuildSummary() {
  if (!tracker_) {
    summary_ = absl::StrCat(
        "cgroups: none (", disabled_reason_,
        "); processes run without cgroups, stop by process group, and a "
        "Start with limits fails");
    return;
  }
  const Hierarchy& t = hierarchies_[*tracker_];
  std::vector<std::string> lines;
  if (t.mount.version == 2) {
    lines.push_back(absl::StrCat(
        "cgroups: a cgroup per process under ", t.parent_dir,
        " (cgroup2; empty when cgroup.events says so; kill: ",
        has_cgroup_kill_ ? "cgroup.kill" : "each member by pidfd, until empty",
        "); v1 hierarchies are joined only for memory usage and for the limits "
        "a process asks for"));
  } else {
    lines.push_back(absl::StrCat(
        "cgroups: a cgroup per process under ", t.parent_dir,
        " (cgroup v1 freezer; emptiness checked on SIGCHLD; kill: freeze, "
        "kill each member, thaw)"));
  }
  std::vector<std::string> enforced, missing;
  auto add = [&](const char* what, const LimitTarget& target) {
    if (target.ok()) {
      const Hierarchy& h = hierarchies_[target.hierarchy];
      enforced.push_back(absl::StrCat(what, " (", h.mount.version == 2 ? "cgroup2 " : "v1 ",
                                      target.file, " under ", h.parent_dir, ")"));
    } else {
      missing.push_back(absl::StrCat(what, " (", target.missing, ")"));
    }
  };
  add("memory", memory_);
  add("cpu", cpu_);
  add("pids", pids_);
  add("io weight", io_);
  lines.push_back(absl::StrCat(
      "cgroups: limits enforced: ",
      enforced.empty() ? "none" : absl::StrJoin(enforced, ", ")));
  if (!missing.empty()) {
    lines.push_back(absl::StrCat("cgroups: limits refused (FAILED_PRECONDITION): ",
                                 absl::StrJoin(missing, ", ")));
  }
  summary_ = absl::StrJoin(lines, "\n");
}

absl::Status Cgroups::CheckLimits(const pm::v1::Limits& limits) const {
  std::vector<std::string> requested;
  std::vector<std::string> problems;
  auto need = [&](bool wanted, const char* what, const LimitTarget& target) {
    if (!wanted) return;
    requested.push_back(what);
    if (enabled() && !target.ok()) {
      problems.push_back(absl::StrCat(what, " limit: ", target.missing));
    }
  };
  need(limits.memory_bytes() > 0, "memory", memory_);
  need(limits.cpus() > 0, "cpu", cpu_);
  need(limits.pids() > 0, "pids", pids_);
  need(limits.io_weight() > 0, "io weight", io_);
  if (requested.empty()) return absl::OkStatus();
  if (!enabled()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot enforce the requested limits (", absl::StrJoin(requested, ", "),
        "): this supervisor has no cgroups: ", disabled_reason_));
  }
  if (io_.ok() && limits.io_weight() > static_cast<uint32_t>(io_weight_max_)) {
    problems.push_back(absl::StrCat("io weight ", limits.io_weight(), ": ",
                                    io_.file, " here takes at most ",
                                    io_weight_max_));
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("cannot enforce the requested limits on this host: ",
                   absl::StrJoin(problems, "; ")));
}

absl::Status WriteLimits(const pm::v1::Limits& limits, const LimitFiles& files) {
  auto path = [](const std::string& dir, const std::string& name) {
    return absl::StrCat(dir, "/", name);
  };
  if (limits.memory_bytes() > 0) {
    const std::string bytes = absl::StrCat(limits.memory_bytes());
    PM_RETURN_IF_ERROR(
        WriteCgroupFile(path(files.memory_dir, files.memory_file), bytes));
    // RAM and swap together: no swap on cgroup2, memsw = memory on v1 (set
    // after the memory limit, which it may not undercut).
    if (!files.memory_swap_file.empty()) {
      PM_RETURN_IF_ERROR(WriteCgroupFile(
          path(files.memory_dir, files.memory_swap_file),
          files.memory_swap_file == "memory.swap.max" ? "0" : bytes));
    }
  }
  if (limits.cpus() > 0) {
    const int64_t quota = std::max<int64_t>(
        1000, std::llround(limits.cpus() * kCpuPeriodUsec));
    if (files.cpu_file == "cpu.max") {
      PM_RETURN_IF_ERROR(WriteCgroupFile(path(files.cpu_dir, "cpu.max"),
                                         absl::StrCat(quota, " ", kCpuPeriodUsec)));
    } else {
      PM_RETURN_IF_ERROR(WriteCgroupFile(path(files.cpu_dir, "cpu.cfs_period_us"),
                                         absl::StrCat(kCpuPeriodUsec)));
      PM_RETURN_IF_ERROR(WriteCgroupFile(path(files.cpu_dir, files.cpu_file),
                                         absl::StrCat(quota)));
    }
  }
  if (limits.pids() > 0) {
    PM_RETURN_IF_ERROR(WriteCgroupFile(path(files.pids_dir, "pids.max"),
                                       absl::StrCat(limits.pids())));
  }
  if (limits.io_weight() > 0) {
    // Out of the file's range (blkio.weight starts at 10), the kernel's
    // EINVAL names it; nothing is bent to fit.
    const uint32_t weight = limits.io_weight();
    PM_RETURN_IF_ERROR(WriteCgroupFile(
        path(files.io_dir, files.io_file),
        files.io_file == "io.weight" ? absl::StrCat("default ", weight)
                                     : absl::StrCat(weight)));
  }
  return absl::OkStatus();
}

absl::Status Cgroups::ApplyLimits(const pm::v1::Limits& limits,
                                  const std::vector<std::string>& dirs) const {
  auto dir = [&](const LimitTarget& target) {
    return target.ok() ? dirs[target.hierarchy] : std::string();
  };
  LimitFiles files;
  files.memory_dir = dir(memory_);
  files.memory_file = memory_.file;
  files.memory_swap_file = memory_swap_file_;
  files.cpu_dir = dir(cpu_);
  files.cpu_file = cpu_.file;
  files.pids_dir = dir(pids_);
  files.io_dir = dir(io_);
  files.io_file = io_.file;
  return WriteLimits(limits, files);
}

std::vector<bool> Cgroups::HierarchiesFor(const pm::v1::Limits& limits) const {
  std::vector<bool> used(hierarchies_.size(), false);
  // With v1 tracking every hierarchy is joined: the freezer cannot read CPU
  // time or tasks for the others. With cgroup2 tracking, cgroup2 itself
  // gives CPU time and tasks, so a v1 hierarchy is joined only for memory
  // usage (always) and for the limits this process asks for: each v1 join
  // is a migration under the kernel's global cgroup lock, the main cost of
  // a start on a hybrid host.
  const bool all = hierarchies_[*tracker_].mount.version != 2;
  auto use = [&](int index) {
    if (index >= 0) used[static_cast<size_t>(index)] = true;
  };
  use(*tracker_);
  use(memory_.hierarchy);
  if (limits.cpus() > 0) use(cpu_.hierarchy);
  if (limits.pids() > 0) use(pids_.hierarchy);
  if (limits.io_weight() > 0) use(io_.hierarchy);
  if (all) used.assign(hierarchies_.size(), true);
  return used;
}

absl::StatusOr<std::unique_ptr<ProcessCgroup>> Cgroups::Create(
    const pm::v1::Limits& limits) {
  PM_RETURN_IF_ERROR(CheckLimits(limits));
  if (!enabled()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no cgroups: ", disabled_reason_));
  }
  const std::vector<bool> used = HierarchiesFor(limits);
  // Parallel to hierarchies_: "" for a hierarchy this process does not join.
  std::vector<std::string> dirs(hierarchies_.size());
  std::vector<std::string> made;  // in creation order, tracker first
  std::string name;
  auto rollback = [&made] {
    for (auto it = made.rbegin(); it != made.rend(); ++it) rmdir(it->c_str());
    made.clear();
  };
  // A name left behind by an earlier supervisor with our pid is skipped.
  for (int attempt = 0;; ++attempt) {
    name = absl::StrCat(options_.name_prefix, next_name_.fetch_add(1));
    bool taken = false;
    for (size_t i = 0; i < hierarchies_.size(); ++i) {
      if (!used[i]) continue;
      const std::string dir = absl::StrCat(hierarchies_[i].parent_dir, "/", name);
      if (mkdir(dir.c_str(), 0755) != 0) {
        const int err = errno;
        rollback();
        if (err == EEXIST && attempt < 100) {
          taken = true;
          break;
        }
        return ErrnoError("mkdir", dir, err);
      }
      made.push_back(dir);
      dirs[i] = dir;
    }
    if (!taken) break;
  }
  if (absl::Status applied = ApplyLimits(limits, dirs); !applied.ok()) {
    rollback();
    return applied;
  }

  std::unique_ptr<ProcessCgroup> cgroup = NewProcessCgroup(name, dirs);
  auto open_or_rollback = [&](const std::string& path, int flags) -> absl::StatusOr<Fd> {
    absl::StatusOr<Fd> fd = Fd::Open(path, flags);
    if (!fd.ok()) rollback();
    return fd;
  };
  for (const std::string& dir : cgroup->all_dirs_) {
    PM_ASSIGN_OR_RETURN(Fd procs,
                        open_or_rollback(dir + "/cgroup.procs", O_WRONLY));
    cgroup->procs_fds_.push_back(std::move(procs));
  }
  if (cgroup->tracker_is_v2_) {
    PM_ASSIGN_OR_RETURN(cgroup->cgroup2_dir_,
                        open_or_rollback(cgroup->tracker_dir_, O_RDONLY | O_DIRECTORY));
    PM_ASSIGN_OR_RETURN(cgroup->events_,
                        open_or_rollback(cgroup->tracker_dir_ + "/cgroup.events", O_RDONLY));
  }
  return cgroup;
}

absl::StatusOr<std::unique_ptr<ProcessCgroup>> Cgroups::Adopt(
    const CgroupDirs& recorded) {
  if (!enabled()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot adopt a cgroup (", Describe(recorded),
                     "): no cgroups: ", disabled_reason_));
  }
  PM_ASSIGN_OR_RETURN(std::vector<std::string> dirs, AdoptableDirs(recorded));
  PM_RETURN_IF_ERROR(DropGoneDirs(dirs));
  const std::string& tracker_dir = dirs[*tracker_];
  std::unique_ptr<ProcessCgroup> cgroup =
      NewProcessCgroup(tracker_dir.substr(tracker_dir.rfind('/') + 1), dirs);
  if (cgroup->tracker_is_v2_) {
    // ENOENT here too if the tree ended and was removed since the lstat.
    PM_ASSIGN_OR_RETURN(cgroup->events_,
                        Fd::Open(tracker_dir + "/cgroup.events", O_RDONLY));
  }
  return cgroup;
}

absl::StatusOr<std::vector<std::string>> Cgroups::AdoptableDirs(
    const CgroupDirs& recorded) const {
  std::vector<std::string> dirs(hierarchies_.size());
  std::string name;
  auto take = [&](const std::string& dir, int index) -> absl::Status {
    PM_ASSIGN_OR_RETURN(std::string ours, AdoptableDir(dir, index));
    const std::string its_name = ours.substr(ours.rfind('/') + 1);
    // Create gives a cgroup one name in every hierarchy; a record mixing
    // names would join two processes' cgroups into one.
    if (!name.empty() && its_name != name) {
      return RefuseDir(dir, absl::StrCat("is not named \"", name,
                                         "\" as the rest of the record (",
                                         Describe(recorded), ")"));
    }
    name = its_name;
    dirs[static_cast<size_t>(index)] = std::move(ours);
    return absl::OkStatus();
  };
  auto find = [&](auto matches) {
    auto it = std::find_if(hierarchies_.begin(), hierarchies_.end(),
                           [&](const Hierarchy& h) { return matches(h.mount); });
    return it == hierarchies_.end() ? -1
                                    : static_cast<int>(it - hierarchies_.begin());
  };
  if (!recorded.unified.empty()) {
    const int index = find([](const CgroupMount& m) { return m.version == 2; });
    if (index < 0) {
      return RefuseDir(recorded.unified,
                       "is a cgroup2 directory, and this supervisor uses no "
                       "cgroup2");
    }
    PM_RETURN_IF_ERROR(take(recorded.unified, index));
  }
  for (const auto& entry : recorded.v1) {
    const std::string& controller = entry.first;
    const std::string& dir = entry.second;
    const int index = find([&](const CgroupMount& m) {
      return m.version == 1 && HasController(m, controller);
    });
    if (index < 0) {
      return RefuseDir(dir, absl::StrCat("is in the cgroup v1 ", controller,
                                         " hierarchy, which this supervisor "
                                         "does not use"));
    }
    PM_RETURN_IF_ERROR(take(dir, index));
  }
  if (dirs[*tracker_].empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the recorded cgroup directories (", Describe(recorded),
        ") have none in ", Describe(hierarchies_[*tracker_].mount),
        ", which tracks this supervisor's processes"));
  }
  return dirs;
}

absl::StatusOr<std::string> Cgroups::AdoptableDir(const std::string& recorded,
                                                  int index) const {
  const Hierarchy& h = hierarchies_[static_cast<size_t>(index)];
  if (!IsPlainAbsolutePath(recorded)) {
    return RefuseDir(recorded,
                     "is not a plain absolute path (it has an empty, \".\" or "
                     "\"..\" component)");
  }
  // Canonical paths, so that a symlink on the way (a mount point reached
  // through /sys/fs/cgroup/cpu -> cpu,cpuacct) is followed to where it
  // leads, and one leading out of our parent is refused. Below the parent
  // a path cannot turn: cgroupfs has no symlinks, and the last component
  // is checked not to be one (DropGoneDirs).
  const size_t slash = recorded.rfind('/');
  const std::string name = recorded.substr(slash + 1);
  absl::StatusOr<std::string> ours = RealPath(h.parent_dir);
  if (!ours.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot adopt cgroup directory \"", recorded,
        "\": this supervisor's parent cgroup is gone: ", ours.status().message()));
  }
  absl::StatusOr<std::string> its =
      RealPath(slash == 0 ? std::string("/") : recorded.substr(0, slash));
  if (!its.ok() || *its != *ours) {
    return RefuseDir(recorded,
                     absl::StrCat("is not directly below ", h.parent_dir,
                                  ", this supervisor's parent cgroup in ",
                                  Describe(h.mount),
                                  its.ok() ? "" : absl::StrCat(" (",
                                      its.status().message(), ")")));
  }
  return absl::StrCat(h.parent_dir, "/", name);
}

absl::Status Cgroups::DropGoneDirs(std::vector<std::string>& dirs) const {
  for (size_t i = 0; i < dirs.size(); ++i) {
    if (dirs[i].empty()) continue;
    struct stat st;
    if (lstat(dirs[i].c_str(), &st) != 0) {
      // Remove goes through the tracker last, so a supervisor killed in
      // the middle of one leaves the tracker with others gone: they are
      // simply not part of the cgroup any more.
      if (errno == ENOENT && static_cast<int>(i) != *tracker_) {
        dirs[i].clear();
        continue;
      }
      return ErrnoError("lstat", dirs[i]);  // ENOENT: NOT_FOUND
    }
    if (!S_ISDIR(st.st_mode)) {
      return RefuseDir(dirs[i], "is not a directory");
    }
  }
  return absl::OkStatus();
}

std::unique_ptr<ProcessCgroup> Cgroups::NewProcessCgroup(
    const std::string& name, const std::vector<std::string>& dirs) const {
  std::unique_ptr<ProcessCgroup> cgroup(new ProcessCgroup());
  const Hierarchy& tracker = hierarchies_[*tracker_];
  cgroup->tracker_dir_ = dirs[*tracker_];
  cgroup->tracker_path_ = JoinCgroupPath(tracker.parent_path, name);
  cgroup->tracker_key_ = HierarchyKey(tracker.mount);
  cgroup->tracker_is_v2_ = tracker.mount.version == 2;
  cgroup->has_cgroup_kill_ = has_cgroup_kill_;
  // The tracker first: spawn_options() puts the child in through it.
  cgroup->all_dirs_.push_back(cgroup->tracker_dir_);
  for (size_t i = 0; i < dirs.size(); ++i) {
    if (dirs[i].empty()) continue;
    if (static_cast<int>(i) != *tracker_) cgroup->all_dirs_.push_back(dirs[i]);
    const Hierarchy& h = hierarchies_[i];
    if (h.mount.version == 2) {
      cgroup->dirs_.unified = dirs[i];
    } else {
      for (const std::string& controller : h.mount.controllers) {
        cgroup->dirs_.v1[controller] = dirs[i];
      }
    }
  }
  return cgroup;
}

// --- ProcessCgroup --------------------------------------------------------------

ProcessCgroup::~ProcessCgroup() = default;

SpawnOptions ProcessCgroup::spawn_options() const {
  SpawnOptions options;
  for (size_t i = 0; i < procs_fds_.size(); ++i) {
    CgroupJoin join{procs_fds_[i].get(), all_dirs_[i] + "/cgroup.procs"};
    if (i == 0 && tracker_is_v2_) {
      options.cgroup2_dir_fd = cgroup2_dir_.get();
      options.cgroup2_join = join;
    } else {
      options.joins.push_back(join);
    }
  }
  return options;
}

void ProcessCgroup::CloseSpawnFds() {
  procs_fds_.clear();
  cgroup2_dir_.reset();
}

bool ProcessCgroup::Populated() const {
  if (removed_) return false;
  if (tracker_is_v2_) {
    // pread from 0 re-reads the whole file and re-arms the EPOLLPRI event.
    char buffer[256];
    ssize_t n = pread(events_.get(), buffer, sizeof(buffer) - 1, 0);
    if (n < 0) return errno != ENODEV && errno != ENOENT;
    std::map<std::string, uint64_t> events =
        ParseKeyedCounters(absl::string_view(buffer, static_cast<size_t>(n)));
    auto it = events.find("populated");
    return it == events.end() || it->second != 0;
  }
  std::optional<std::string> procs = ReadCgroupFile(tracker_dir_, "cgroup.procs");
  if (!procs) return FileExists(tracker_dir_);
  return !absl::StripAsciiWhitespace(*procs).empty();
}

std::vector<pid_t> ProcessCgroup::Members() const {
  std::vector<pid_t> pids;
  std::optional<std::string> procs = ReadCgroupFile(tracker_dir_, "cgroup.procs");
  if (!procs) return pids;
  for (absl::string_view line : absl::StrSplit(*procs, '\n', absl::SkipEmpty())) {
    pid_t pid = 0;
    if (absl::SimpleAtoi(line, &pid) && pid > 0) pids.push_back(pid);
  }
  return pids;
}

bool ProcessCgroup::IsMember(pid_t pid) const {
  std::optional<std::string> text =
      ReadCgroupFile(absl::StrCat("/proc/", pid), "cgroup");
  if (!text) return false;
  std::map<std::string, std::string> paths = ParseProcCgroup(*text);
  auto it = paths.find(tracker_key_);
  return it != paths.end() && it->second == tracker_path_;
}

void ProcessCgroup::SignalMembers(int sig, pid_t skip_pgid) const {
  for (pid_t pid : Members()) {
    // The pidfd pins the process; the membership check after it proves the
    // pid was not recycled by someone else since cgroup.procs was read.
    Fd pidfd(PidfdOpen(pid));
    if (!pidfd || !IsMember(pid)) continue;
    if (skip_pgid > 0) {
      absl::StatusOr<ProcStat> stat = ReadProcStat(pid);
      if (stat.ok() && stat->pgrp == skip_pgid) continue;
    }
    PidfdSendSignal(pidfd.get(), sig);
  }
}

void ProcessCgroup::Kill() {
  if (removed_) return;
  if (tracker_is_v2_ && has_cgroup_kill_) {
    absl::Status killed = WriteCgroupFile(tracker_dir_ + "/cgroup.kill", "1");
    if (!killed.ok() && killed.code() != absl::StatusCode::kNotFound) {
      PM_LOG(ERROR) << "cgroups: " << killed;
    }
    return;
  }
  if (tracker_is_v2_) {
    // Before Linux 5.14: one by one. A member forked meanwhile survives this
    // round; the caller repeats the kill until the cgroup is empty.
    SignalMembers(SIGKILL, 0);
    return;
  }
  FreezeKillThaw();
}

void ProcessCgroup::FreezeKillThaw() {
  // Frozen, no member can fork or exit, so the list read is the whole tree
  // and no pid in it can be recycled before the kill.
  const std::string state = tracker_dir_ + "/freezer.state";
  if (absl::Status frozen = WriteCgroupFile(state, "FROZEN"); !frozen.ok()) {
    PM_LOG(ERROR) << "cgroups: " << frozen;
  } else {
    // v1 has no event for "frozen": reading the state is what advances it.
    // Bounded to 200 ms; past it the kill goes ahead and is repeated.
    for (int i = 0; i < 200; ++i) {
      std::optional<std::string> now = ReadCgroupFile(tracker_dir_, "freezer.state");
      if (!now || absl::StripAsciiWhitespace(*now) == "FROZEN") break;
      struct timespec ms = {0, 1000000};
      nanosleep(&ms, nullptr);
    }
  }
  SignalMembers(SIGKILL, 0);
  if (absl::Status thawed = WriteCgroupFile(state, "THAWED"); !thawed.ok()) {
    PM_LOG(ERROR) << "cgroups: " << thawed;
  }
}

absl::Status ProcessCgroup::Remove() {
  if (removed_) return absl::OkStatus();
  removed_ = true;
  events_.reset();
  CloseSpawnFds();
  std::vector<std::string> failures;
  absl::StatusCode code = absl::StatusCode::kOk;
  for (auto it = all_dirs_.rbegin(); it != all_dirs_.rend(); ++it) {
    if (rmdir(it->c_str()) != 0 && errno != ENOENT) {
      absl::Status status = ErrnoError("rmdir", *it);
      code = status.code();
      failures.emplace_back(status.message());
    }
  }
  if (failures.empty()) return absl::OkStatus();
  return absl::Status(code, absl::StrJoin(failures, "; "));
}

}  // namespace pm::supervisor
