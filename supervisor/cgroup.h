// Cgroups of managed processes: one per process, holding it and all its
// descendants, on cgroup v2, v1 or a hybrid of both, behind one interface.
//
//   CgroupOptions options;                       // --cgroups, --cgroup_parent
//   std::unique_ptr<Cgroups> cgroups = Cgroups::Init(options);
//   PM_LOG(INFO) << cgroups->summary();          // what was found, enforced
//   PM_RETURN_IF_ERROR(cgroups->CheckLimits(request.limits()));
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<ProcessCgroup> cgroup,
//                       cgroups->Create(request.limits()));
//   SpawnOptions spawn = cgroup->spawn_options();  // child born inside
//   ...
//   cgroup->Kill();                              // every member, at once
//   if (!cgroup->Populated()) cgroup->Remove();  // once empty and reaped
//
// Layout. Init reads /proc/self/mountinfo and /proc/self/cgroup. Tracking
// (membership, "is it empty", kill) uses cgroup2 when it is mounted
// (cgroup.events for emptiness, cgroup.kill to kill), else the v1 freezer
// (freeze, kill each member, thaw). Each limit uses the cgroup2 controller
// when it is enabled for our parent, else the v1 hierarchy of that
// controller. With cgroup2 tracking, a process joins a v1 hierarchy only
// where its usage or its limits need it: memory always (cgroup2 gives CPU
// time and tasks by itself), cpu, pids and blkio only when it has that limit,
// since every v1 join is a migration under the kernel's global cgroup lock.
// With v1 tracking it joins every hierarchy pm uses. Usage is read by
// common/cgroup_usage.h from whichever is there.
//
// Scope. All cgroups are made under one parent per hierarchy: --cgroup_parent,
// by default "pm" below the supervisor's own cgroup. Nothing outside it is
// written: on cgroup2 the controllers are enabled in the parent's own
// cgroup.subtree_control only, so those our parent's parent has not
// delegated are reported missing, not forced.
//
// Re-adoption. A supervisor killed outright leaves its processes running in
// their cgroups; the next one takes each over from the directories the
// registry kept (ProcessCgroup::dirs()):
//
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<ProcessCgroup> cgroup,
//                       cgroups->Adopt(record.dirs));  // no spawn fds
//
// The record is not trusted: only directories directly below our own
// parents are taken, so a tampered one cannot make us kill or rmdir
// anything else. Init's sweep of leftovers removes empty cgroups only, so
// a populated one waits for its adopter.
//
// Without cgroups (no permission, --cgroups=off) Init still succeeds:
// enabled() is false, processes run without a cgroup and stop by process
// group, and CheckLimits refuses any limit with FAILED_PRECONDITION naming
// the reason.
//
// Not thread-safe beyond const methods: Create, and everything on a
// ProcessCgroup, belongs to the supervisor's loop thread.
#ifndef PM_SUPERVISOR_CGROUP_H_
#define PM_SUPERVISOR_CGROUP_H_

#include <sys/types.h>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/cgroup_usage.h"
#include "common/fd.h"
#include "pm/v1/process_manager.pb.h"
#include "supervisor/spawn.h"

namespace pm::supervisor {

// --cgroups: which hierarchies to use.
enum class CgroupMode {
  kAuto,  // cgroup2 to track and kill and for its controllers, v1 for the rest
  kV2,    // cgroup2 only
  kV1,    // v1 only (tracking with the freezer)
  kOff,   // no cgroups: processes stop by process group, limits are refused
};
// "auto", "v2", "v1", "off"; INVALID_ARGUMENT otherwise.
absl::StatusOr<CgroupMode> ParseCgroupMode(absl::string_view text);

// One cgroup filesystem mount.
struct CgroupMount {
  int version = 0;         // 1 or 2
  std::string mount_point;  // "/sys/fs/cgroup/memory"
  // The cgroup the mount shows at its mount point ("/" unless a subtree was
  // bind-mounted), in the terms of /proc/PID/cgroup.
  std::string root;
  // v1 only: the controllers ("cpu", "cpuacct") or "name=..." of the
  // hierarchy, sorted.
  std::vector<std::string> controllers;
};

// The cgroup and cgroup2 mounts of a /proc/PID/mountinfo text, in order.
// Octal escapes in paths ("\040" for a space) are decoded; malformed lines
// are skipped.
std::vector<CgroupMount> ParseCgroupMounts(absl::string_view mountinfo);

// A /proc/PID/cgroup text as hierarchy -> cgroup path. The key is "" for
// cgroup2 ("0::/a/b"), else the hierarchy's controllers sorted and joined
// by ',' ("cpu,cpuacct", "name=systemd").
std::map<std::string, std::string> ParseProcCgroup(absl::string_view text);

// Where each limit of a new cgroup is written, as Cgroups found it: a
// directory and a file per limit ("" where not set up).
struct LimitFiles {
  std::string memory_dir, memory_file;  // memory.max | memory.limit_in_bytes
  // memory.swap.max (set to 0) | memory.memsw.limit_in_bytes (= memory)
  std::string memory_swap_file;
  std::string cpu_dir, cpu_file;  // cpu.max | cpu.cfs_quota_us
  std::string pids_dir;           // pids.max
  // io.weight | io.bfq.weight | blkio.weight | blkio.bfq.weight
  std::string io_dir, io_file;
};

// Writes the limits set in `limits` to `files`: memory as RAM and swap
// together, cpus as a quota per 100 ms period, pids.max, the io weight
// ("default N" for io.weight). Errors name the file and value, e.g.
// write("/sys/fs/cgroup/pm/1.1/memory.max", "12"): Invalid argument (EINVAL).
absl::Status WriteLimits(const pm::v1::Limits& limits, const LimitFiles& files);

struct CgroupOptions {
  CgroupMode mode = CgroupMode::kAuto;
  // The cgroup path (as in /proc/self/cgroup, e.g. "/pm.slice/pm") below
  // which every process gets its cgroup, in each hierarchy used. Empty:
  // "<the supervisor's own cgroup>/pm", per hierarchy.
  std::string parent;
  // Where "mountinfo" and "cgroup" are read (tests use a fake directory).
  std::string proc_self = "/proc/self";
  // The stack this supervisor belongs to (CgroupStackTag of its state
  // dir): its cgroups are named "<stack>.<pid>.<n>", and its sweep of
  // leftovers takes only those (and the untagged "<pid>.<n>" of builds
  // before tags), never another stack's sharing the parent. Empty: untagged.
  std::string stack;
  // Names of per-process cgroups are <prefix><n>; empty: "<stack>.<our
  // pid>." ("<our pid>." without a stack).
  std::string name_prefix;
};

// The tag of the stack whose state dir is `state_dir`: "s" and 12 hex
// digits of a hash of its absolute path (as realpath gives it when it
// exists), the same for every supervisor of that stack, different for
// two stacks on one host.
std::string CgroupStackTag(const std::string& state_dir);

class ProcessCgroup;

class Cgroups {
 public:
  // Detects the layout, creates the parent cgroups, enables the cgroup2
  // controllers there and probes which limits a new cgroup can take. Never
  // fails: what cannot be used is reported by summary() and CheckLimits().
  // remove_leftovers: sweep the empty cgroups a dead supervisor left at
  // once (a supervisor that re-adopts sweeps once it knows the live
  // records, RemoveLeftovers with their directories kept).
  static std::unique_ptr<Cgroups> Init(const CgroupOptions& options,
                                       bool remove_leftovers = true);
  // Removes the empty per-process cgroups a supervisor of this stack that
  // died left in our parents ("<stack>.<pid>.<n>", or an untagged
  // "<pid>.<n>", whose pid no longer runs); a populated one is left alone
  // and logged, and so is every cgroup of another stack. Those in `keep` (directories of live records: a
  // process between two runs leaves its cgroup empty) stay.
  void RemoveLeftovers(const absl::flat_hash_set<std::string>& keep = {}) const;
  ~Cgroups();

  // Whether processes get cgroups at all.
  bool enabled() const { return tracker_.has_value(); }
  // A few lines for the startup log: what was found, what will be tracked
  // and enforced, and what is missing and why.
  const std::string& summary() const { return summary_; }

  // OK when every limit set in `limits` can be enforced; otherwise
  // FAILED_PRECONDITION naming each limit that cannot and what is missing.
  absl::Status CheckLimits(const pm::v1::Limits& limits) const;

  // Makes a new empty cgroup in every hierarchy used and applies `limits`
  // (CheckLimits first). Errors name the call and path (mkdir, a write of a
  // limit); nothing is left behind on error.
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> Create(
      const pm::v1::Limits& limits);

  // The cgroup an earlier supervisor made (Create) for a process that
  // outlived it, from the directories it recorded (ProcessCgroup::dirs()),
  // so that this supervisor tracks, signals, kills and removes it as its
  // own. Only directories directly below this supervisor's parent cgroup in
  // a hierarchy it uses are taken (a record naming anything else is
  // refused: INVALID_ARGUMENT naming the directory); the tracking one must
  // be among them. NOT_FOUND if the tracking directory no longer exists
  // (the tree ended and it was removed); FAILED_PRECONDITION without
  // cgroups. It has no spawn fds (spawn_options() is empty).
  //
  // Paths are compared canonically (a record may spell a mount point
  // through a symlink) but must be plain: absolute, without "." or "..",
  // all naming the same cgroup. dirs() of the result are spelled as Create
  // spells them. A directory in a hierarchy other than the tracking one
  // that is gone (a Remove cut short removes those first) is left out.
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> Adopt(const CgroupDirs& dirs);

 private:
  struct Hierarchy {
    CgroupMount mount;
    std::string parent_path;  // in /proc/PID/cgroup terms
    std::string parent_dir;   // its directory
  };
  // Where one kind of limit is enforced: a hierarchy and a file, or a
  // reason why it cannot be.
  struct LimitTarget {
    int hierarchy = -1;  // index into hierarchies_
    std::string file;    // "memory.max", "cpu.cfs_quota_us", ...
    std::string missing;  // non-empty: why not
    bool ok() const { return hierarchy >= 0; }
  };

  explicit Cgroups(CgroupOptions options);
  void Detect();
  // Resolves and creates the parent cgroup of `mount`; the index of the new
  // entry in hierarchies_ (reused if the mount is there already).
  absl::StatusOr<int> AddHierarchy(const CgroupMount& mount,
                                   const std::map<std::string, std::string>& own);
  void EnableV2Controllers(const Hierarchy& v2);
  void PickLimitTargets(const std::vector<CgroupMount>& mounts,
                        const std::map<std::string, std::string>& own);
  void Probe();
  void BuildSummary();
  // Which of hierarchies_ a process with `limits` joins (parallel to it).
  std::vector<bool> HierarchiesFor(const pm::v1::Limits& limits) const;
  // Adopt's steps. The recorded directories, checked, as Create spells
  // them, parallel to hierarchies_ ("" where not joined); the tracker's is
  // there.
  absl::StatusOr<std::vector<std::string>> AdoptableDirs(
      const CgroupDirs& recorded) const;
  // The directory of a recorded cgroup in hierarchies_[index], checked to
  // be directly below its parent: INVALID_ARGUMENT otherwise.
  absl::StatusOr<std::string> AdoptableDir(const std::string& recorded,
                                           int index) const;
  // Clears the entries of `dirs` that are gone, but for the tracker's
  // (NOT_FOUND); INVALID_ARGUMENT for one that is not a directory.
  absl::Status DropGoneDirs(std::vector<std::string>& dirs) const;
  // `dirs` is parallel to hierarchies_ ("" where not joined); `name` is the
  // cgroup's name in each. The fds spawning needs are not opened here.
  std::unique_ptr<ProcessCgroup> NewProcessCgroup(
      const std::string& name, const std::vector<std::string>& dirs) const;
  // `dirs` is parallel to hierarchies_ ("" where not joined).
  absl::Status ApplyLimits(const pm::v1::Limits& limits,
                           const std::vector<std::string>& dirs) const;

  const CgroupOptions options_;
  std::string disabled_reason_;
  // Every hierarchy a process joins; hierarchies_[*tracker_] tracks.
  std::vector<Hierarchy> hierarchies_;
  std::optional<int> tracker_;
  std::vector<std::string> v2_enabled_;  // controllers enabled for children
  LimitTarget memory_, cpu_, pids_, io_;
  std::string memory_swap_file_;  // memory.swap.max / memory.memsw.limit_in_bytes
  int io_weight_max_ = 10000;     // 1000 for the BFQ and v1 files
  bool has_cgroup_kill_ = false;
  std::string summary_;
  std::atomic<uint64_t> next_name_{1};
};

// The cgroup of one process. Owned by the supervisor's record of the
// process; not removed by the destructor (a cgroup outlives the leader
// while any descendant lives), only by Remove().
class ProcessCgroup {
 public:
  ~ProcessCgroup();

  // The directories, per hierarchy (for the registry and usage reads).
  const CgroupDirs& dirs() const { return dirs_; }
  // The directory that tracks the tree (cgroup2, or the v1 freezer).
  const std::string& path() const { return tracker_dir_; }

  // How Spawn puts the child in: born in the cgroup2 one, joining the v1
  // ones before exec. Valid until CloseSpawnFds(); empty for an adopted
  // cgroup.
  SpawnOptions spawn_options() const;
  // Closes the fds only spawning needs.
  void CloseSpawnFds();

  // cgroup.events, readable for EPOLLPRI each time "populated" changes;
  // -1 when tracking with v1, which has no such event (check on SIGCHLD).
  int events_fd() const { return events_.get(); }

  // Whether any process is in the cgroup or below it. A cgroup that is gone
  // is empty; an unreadable one counts as populated.
  bool Populated() const;
  // SIGKILLs every member, including those that left the process group:
  // cgroup.kill on cgroup2 (Linux 5.14); else, so no member can fork away
  // meanwhile, freeze (v1), kill each member, thaw. Logs failures.
  void Kill();
  // Whether one Kill() reaches processes forked while it runs (cgroup.kill);
  // if not, repeat it until the cgroup is empty.
  bool kill_is_atomic() const { return has_cgroup_kill_; }
  // Sends `sig` to each member whose process group is not `skip_pgid`.
  // Members are named by pid only in cgroup.procs, so each is opened as a
  // pidfd and checked to still be a member before it is signalled: a
  // recycled pid never gets it.
  void SignalMembers(int sig, pid_t skip_pgid) const;

  // The tree's usage now.
  pm::v1::ResourceUsage ReadUsage() const { return ReadCgroupUsage(dirs_); }

  // Removes the cgroup from every hierarchy (it must be empty). Errors name
  // the rmdir that failed; what could be removed is removed.
  absl::Status Remove();

 private:
  friend class Cgroups;
  ProcessCgroup() = default;
  // The members' pids as cgroup.procs lists them now.
  std::vector<pid_t> Members() const;
  bool IsMember(pid_t pid) const;
  void FreezeKillThaw();

  CgroupDirs dirs_;
  std::vector<std::string> all_dirs_;  // tracker first
  std::string tracker_dir_;
  std::string tracker_path_;  // in /proc/PID/cgroup terms
  std::string tracker_key_;   // its hierarchy's key in /proc/PID/cgroup
  bool tracker_is_v2_ = false;
  bool has_cgroup_kill_ = false;
  bool removed_ = false;
  Fd cgroup2_dir_;
  std::vector<Fd> procs_fds_;  // parallel to all_dirs_
  Fd events_;
};

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_CGROUP_H_
