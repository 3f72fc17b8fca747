// The registry: the directory of process records, id -> spec, state, pid,
// exit. Every status and list answer of pm comes from here. The supervisor
// creates a record once a process has exec'd and reports its state changes;
// readers ask for one record or all of them.
//
//   pm::registry::RegistryOptions options;
//   options.max_ended_records = FLAGS_max_ended_records;
//   pm::registry::Registry registry(options);        // in memory only
//   // or, durable: every change written through before it is answered
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<pm::registry::Registry> registry,
//                       pm::registry::Registry::Open(options, std::move(store)));
//   PM_ASSIGN_OR_RETURN(pm::v1::ProcessStatus created,
//                       registry.CreateRecord(create_request));
//   ...                                       // the process is reaped
//   PM_RETURN_IF_ERROR(registry.UpdateRecord(exited_request).status());
//   PM_ASSIGN_OR_RETURN(pm::v1::ProcessStatus status,
//                       registry.GetStatus(created.id()));
//   pm::v1::ListResponse all = registry.List();   // newest first
//
// Thread-safe. Memory is bounded by the number of live processes (which the
// supervisor caps) plus `max_ended_records`: past that, the record that ended
// first is dropped (evicted). Live records are never dropped. The ids of the
// last `evicted_ids_kept` evicted records are remembered, so asking for one
// says it was evicted and by which cap rather than that it never existed.
//
// With a RecordStore (Open), the records in memory are the serving copy and
// the store the durable one: each create, update and eviction is written to
// the store before the call returns, and Open loads them all back. A record
// still running in the store when the host has rebooted since (its boot id
// differs) is loaded as LOST.
#ifndef PM_REGISTRY_REGISTRY_H_
#define PM_REGISTRY_REGISTRY_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/numeric/int128.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/cgroup_usage.h"
#include "common/names.h"
#include "registry/cluster.h"
#include "registry/record_store.h"
#include "pm/internal/v1/internal.pb.h"
#include "pm/v1/process_manager.pb.h"

namespace pm::registry {

struct RegistryOptions {
  // How many ended (EXITED, SIGNALED or LOST) records are kept. Past it,
  // the record that ended first is dropped, in the store too.
  size_t max_ended_records = 10000;
  // How many ids of evicted records are remembered, oldest forgotten first
  // (and none across a restart of the registry). Each costs about 50 bytes:
  // 16 in the FIFO, and 16 plus a control byte per slot of a hash set kept
  // under 7/8 full; about 3.2 MiB at 65,536.
  size_t evicted_ids_kept = 65536;
  // Where the live view of running processes is read from. Tests point it
  // at a fake tree.
  std::string proc_root = "/proc";
  // The current boot's id, stored with each record (Open only). Tests point
  // it at a file of their own.
  std::string boot_id_path = "/proc/sys/kernel/random/boot_id";
  // How many events (Watch) are kept, in memory and in the store; a
  // watcher that falls further behind is told how many it missed.
  size_t max_events = 10000;
  // This host's name in a cluster (ProcessStatus.node of every record it
  // creates); empty when not in one.
  std::string node;
};

// What a Watch wants (pm.v1.WatchRequest, its selectors parsed).
struct WatchFilter {
  std::string id;          // full id, lower case; empty: any
  std::string owner_user;  // empty: anyone's
  std::string name;
  std::vector<LabelSelector> selectors;
  std::vector<pm::v1::Event::Kind> kinds;  // empty: all
  bool Matches(const pm::v1::Event& event) const;
};
// INVALID_ARGUMENT for a malformed id, selector or kind.
absl::StatusOr<WatchFilter> ParseWatchFilter(const pm::v1::WatchRequest& request);

class Registry {
 public:
  // Records in memory only: gone with the process.
  explicit Registry(RegistryOptions options = {});
  // Records in memory, written through to `store`, which is loaded first:
  // ended records as they were (past max_ended_records, the first ended are
  // evicted, from the store too), running ones as they were if the host has
  // not rebooted since they were stored, else as LOST (written back so).
  // Errors: reading the boot id (naming the file), or the store's (say
  // DATA_LOSS for an unreadable database, naming it).
  static absl::StatusOr<std::unique_ptr<Registry>> Open(
      RegistryOptions options, std::unique_ptr<RecordStore> store);
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  // Stops the cluster's threads first (they read the records).
  ~Registry();

  // Makes this registry a member of a cluster (cluster.h): ids and names
  // are claimed there before a record is created, every change is
  // mirrored there, and the other hosts' records answer GetStatus, List,
  // Resolve and Wait (an ended one) beside this host's. Call once, before
  // serving; `Snapshot` is what the cluster's Snapshot callback calls.
  void AttachCluster(std::unique_ptr<Cluster> cluster);
  // What this registry told of other hosts' records, from its retained
  // events (as loaded from its store), for Cluster::Options::told_before:
  // a restarted registry tells what changed on other hosts while it was
  // down.
  Cluster::ToldBefore ToldOfOtherHosts() const;
  // This host's records as stored (no run time, no live view).
  std::vector<pm::v1::ProcessStatus> Snapshot() const;
  // Null when not in a cluster.
  const Cluster* cluster() const { return cluster_.get(); }

  // Records a process that has just been exec'd: takes the request's id
  // (INVALID_ARGUMENT if malformed, ALREADY_EXISTS if taken, also by a
  // record evicted since) or mints one (a
  // random version 4 UUID), state RUNNING, and keeps the spec's executable, args,
  // working dir, limits and isolation, the resolved executable, pid, start
  // ticks, started_at (now if unset), owner and cgroup. The spec's env is neither kept nor echoed: it may
  // hold secrets. Returns the new status (without the live /proc view),
  // once it is in the store. INVALID_ARGUMENT if pid <= 0 or the executable
  // is empty; INTERNAL if no id can be minted; UNAVAILABLE with the store's
  // error when it could not be stored (nothing is recorded then).
  absl::StatusOr<pm::v1::ProcessStatus> CreateRecord(
      const pm::internal::v1::CreateRecordRequest& request);

  // Applies a state change reported by the supervisor and returns the full
  // status, once it is in the store. Allowed: RUNNING -> STOPPING,
  // STOPPING -> RUNNING (a stop that gave up), RUNNING/STOPPING -> EXITED
  // (keeps the end's exit_code) or SIGNALED (keeps signal and core_dumped)
  // or LOST (the supervisor found neither the process nor its exit; the
  // end_reason says so, a default one if the update has none); every final
  // update applies the request's ProcessEnd (ended_at now if unset).
  // Repeating the current state is a no-op, so the supervisor may retry an
  // update whose answer it lost; an ended record is final, so a repeated
  // final update must match it. UNAVAILABLE with the store's error when the
  // change could not be stored: the record stays as it was.
  // Errors: INVALID_ARGUMENT for a malformed id, an unspecified state, an
  // exit code outside 0..255 or a signal <= 0; NOT_FOUND for an unknown id
  // ("no process with id ...", or "process ... ended and its record was
  // evicted (cap --max_ended_records=N)"); FAILED_PRECONDITION naming both
  // states for any other change of an ended record.
  absl::StatusOr<pm::v1::ProcessStatus> UpdateRecord(
      const pm::internal::v1::UpdateRecordRequest& request);

  // The record of `id` and its run time; while it runs (RUNNING or
  // STOPPING), also its live view from /proc: proc_status, rss_bytes,
  // threads, and the usage of its tree from its cgroup (if it has one). The live fields stay empty when the process is already gone
  // (its exit report is on the way) or its pid names another process.
  // Errors: INVALID_ARGUMENT for a malformed id, NOT_FOUND for an unknown one
  // (saying so when its record was evicted, see UpdateRecord).
  absl::StatusOr<pm::v1::ProcessStatus> GetStatus(absl::string_view id) const;

  // Every record, newest first (by started_at; among equal started_at, the
  // one created last first); with `owner_user`, only that user's (nothing
  // of the others is copied). No /proc reads, so it stays fast with many
  // records.
  pm::v1::ListResponse List(absl::string_view owner_user = "") const;
  // The same, filtered as `request` says (owner_user, states, name, label
  // selectors, limit: see pm.v1.ListRequest). INVALID_ARGUMENT for a
  // malformed selector, an unknown state, or more than 64 selectors.
  absl::StatusOr<pm::v1::ListResponse> List(const pm::v1::ListRequest& request) const;

  // The id that `request.ref` names among the records on file (those of
  // `request.owner_user` only, when set): a full id, else an exact name,
  // else a prefix of exactly one id (hex digits and dashes, any case).
  // With name_only, an exact name only. INVALID_ARGUMENT for a malformed
  // ref; NOT_FOUND when nothing matches; FAILED_PRECONDITION for a prefix
  // several ids share, listing up to 10 of them (with their names).
  // Records other users own are never matched nor listed.
  absl::StatusOr<pm::internal::v1::ResolveResponse> Resolve(
      const pm::internal::v1::ResolveRequest& request) const;

  // Drops the ended record of `id` (full id) from memory and the store, as
  // an eviction does, and returns it as it was: the id then answers
  // NOT_FOUND "process ID was removed" (remembered as evicted ids are), its
  // name is free. With `owner_user`, only that user's record (another's is
  // NOT_FOUND, as an unknown one). FAILED_PRECONDITION for a record that has
  // not ended; UNAVAILABLE when the store could not drop it (nothing changes).
  absl::StatusOr<pm::v1::ProcessStatus> RemoveRecord(
      absl::string_view id, absl::string_view owner_user = "");

  // The records that have not ended, oldest first, each with its pid's
  // start_ticks and its cgroup (StoredRecord): what a supervisor that
  // restarts re-adopts. No /proc reads.
  std::vector<pm::internal::v1::StoredRecord> ListLive() const;

  // The hosts of the cluster that hold their lease now, each with its
  // gateway and how many of its processes have not ended (this host's
  // counted from its records, the others' from their mirrored ones); this
  // host's first. Empty when not in a cluster.
  pm::internal::v1::ListNodesResponse ListNodes() const;

  // Calls `done` once the record of `id` has ended, with its final status:
  // at once (before returning) if it already has, else from the
  // UpdateRecord that ends it. Errors (INVALID_ARGUMENT, NOT_FOUND) are
  // passed to `done` at once. Returns a token for CancelWait (0 when `done`
  // has already run).
  using WaitCallback = std::function<void(absl::StatusOr<pm::v1::ProcessStatus>)>;
  uint64_t Wait(absl::string_view id, WaitCallback done);
  // Forgets a pending Wait (its caller went away); `done` is not called.
  void CancelWait(absl::string_view id, uint64_t token);

  // Records held, live and ended.
  size_t size() const;
  // Records held by state (every state, zeros included).
  std::map<pm::v1::ProcessStatus::State, size_t> CountByState() const;

  // Events (events.cc). Every create, state change and removal appends
  // one (two for an end by the OOM killer), numbered 1, 2, ... across
  // restarts (they are stored with the change they tell of); the newest
  // max_events are kept.
  //
  // The first retained event after `after` that `filter` matches: the
  // event, the cursor to ask from next (past the events skipped), and how
  // many events after `after` are no longer retained.
  struct NextEventResult {
    std::optional<pm::v1::Event> event;
    uint64_t cursor = 0;
    uint64_t missed = 0;
  };
  NextEventResult NextEvent(uint64_t after, const WatchFilter& filter) const;
  // The sequence of the newest event (0: none yet).
  uint64_t last_event_sequence() const;
  // `wake` runs (on the thread of the change, no registry lock held) after
  // each append of events, until RemoveWatcher. Returns a token.
  uint64_t AddWatcher(std::function<void()> wake);
  // Once it returns, the token's wake is not running on any thread and
  // never runs again, so what it captured may go. It waits for a wake in
  // flight on another thread; called from inside the wake itself, it
  // returns at once and the wake is not run again.
  void RemoveWatcher(uint64_t token);

 private:
  // Orders records by started_at, then creation.
  using AgeKey = std::pair<absl::Time, uint64_t>;

  struct Record {
    // The stored fields; run_time and the live view are filled per answer.
    pm::v1::ProcessStatus status;
    // The boot it was created in (see RegistryOptions::boot_id_path).
    std::string boot_id;
    // Its place in ended_order_ once ended (1, 2, ...); 0 while it runs.
    uint64_t ended_order = 0;
    // Field 22 of /proc/PID/stat: with the pid, names the process.
    uint64_t start_ticks = 0;
    // Where live usage is read while it runs; empty without a cgroup.
    CgroupDirs cgroup;
    AgeKey age;
    // The sequence of the last update applied (UpdateRecordRequest).
    uint64_t sequence = 0;
    // Pending Waits, by token; run when the record ends.
    std::map<uint64_t, WaitCallback> waiters;
  };

  absl::StatusOr<pm::v1::ProcessStatus> CreateRecordImpl(
      const pm::internal::v1::CreateRecordRequest& request);
  absl::StatusOr<pm::v1::ProcessStatus> RemoveRecordImpl(
      absl::string_view id, absl::string_view owner_user);
  // Adds the events that the change of a record to `after` tells of
  // (`before`: its state before; UNSPECIFIED for a new record, and
  // `removed` for a removal) to `write`, numbered from
  // next_event_sequence_, with the drop of those past max_events.
  // `run_before`: the run on record before the change (a new run is
  // KIND_STARTED).
  void AddEvents(pm::v1::ProcessStatus::State before,
                 const pm::v1::ProcessStatus& after, bool removed,
                 RecordWrite& write, uint32_t run_before = 0) const
      ABSL_SHARED_LOCKS_REQUIRED(mutex_);
  // Once `write` is stored: its events into memory.
  void KeepEvents(RecordWrite& write) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Runs every watcher's wake (no lock held).
  void WakeWatchers();
  // Other hosts' changes (the cluster's listener): events, numbered and
  // stored as this host's own are.
  void TellRemoteChanges(std::vector<Cluster::RemoteChange> changes)
      ABSL_LOCKS_EXCLUDED(mutex_);

  // UpdateRecord under the lock; hands out the Waits the update ends.
  absl::StatusOr<pm::v1::ProcessStatus> UpdateLocked(
      const pm::internal::v1::UpdateRecordRequest& request,
      std::map<uint64_t, WaitCallback>& ended_waiters)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Looks `id` up (validated, any case). INVALID_ARGUMENT / NOT_FOUND (which
  // says so if its record was evicted).
  absl::StatusOr<Record*> Find(absl::string_view id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::StatusOr<const Record*> Find(absl::string_view id) const
      ABSL_SHARED_LOCKS_REQUIRED(mutex_);
  // Queues the just-ended record `id` for eviction and drops the records
  // that ended first while more than the cap are kept.
  // (The store has dropped them already: see EvictedBy.)
  void NoteEnded(std::string id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void EvictPastCap() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // The ids NoteEnded would evict after `ended` more records end (`also`,
  // if not empty, being the last of them).
  std::vector<std::string> EvictedBy(size_t ended, const std::string& also)
      const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // The store's copy of `record` with `status` and `ended_order` in place
  // of its own (what it is about to become).
  pm::internal::v1::StoredRecord ToStored(const Record& record,
                                          const pm::v1::ProcessStatus& status,
                                          uint64_t ended_order) const;
  // Writes `write` to the store, in one transaction; OK without a store.
  absl::Status Persist(const RecordWrite& write) const;
  // Open's second half: the store's records into memory.
  absl::Status Load() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Remembers the id of an evicted record, forgetting the oldest past
  // evicted_ids_kept.
  void RememberEvicted(absl::uint128 id, bool removed = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Adds a record to, or drops it from, ids_ and names_.
  void Index(const std::string& id, const pm::v1::ProcessStatus& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void Unindex(const std::string& id, const pm::v1::ProcessStatus& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  // How many candidates an ambiguous prefix lists.
  static constexpr size_t kMaxCandidatesShown = 10;

  const RegistryOptions options_;
  // Null for a registry in memory only.
  std::unique_ptr<RecordStore> store_;
  // Resolve among the records known here (this host's, and the others'
  // seen through the cluster's watch).
  absl::StatusOr<pm::internal::v1::ResolveResponse> ResolveKnown(
      const pm::internal::v1::ResolveRequest& request) const;
  // Null when not in a cluster. Its own lock is taken inside mutex_, never
  // the other way round.
  std::unique_ptr<Cluster> cluster_;
  std::string boot_id_;
  mutable absl::Mutex mutex_;
  absl::flat_hash_map<std::string, Record> records_ ABSL_GUARDED_BY(mutex_);
  // Ids by age, oldest first; List walks it backwards.
  std::map<AgeKey, std::string> by_age_ ABSL_GUARDED_BY(mutex_);
  // Every id on record, sorted (a prefix is a range), and the names taken.
  std::set<std::string> ids_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<std::string, std::string> names_ ABSL_GUARDED_BY(mutex_);
  // Ids of ended records in the order they ended: the eviction queue.
  std::deque<std::string> ended_order_ ABSL_GUARDED_BY(mutex_);
  // Ids of evicted records (their 128 bits), in the order evicted, and the
  // same as a set for lookups.
  std::deque<absl::uint128> evicted_order_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_set<absl::uint128> evicted_ ABSL_GUARDED_BY(mutex_);
  // Those of them that were removed (RemoveRecord), not evicted by the cap.
  absl::flat_hash_set<absl::uint128> removed_ ABSL_GUARDED_BY(mutex_);
  uint64_t next_sequence_ ABSL_GUARDED_BY(mutex_) = 0;
  // The newest events, oldest first, their sequences consecutive.
  std::deque<pm::v1::Event> events_ ABSL_GUARDED_BY(mutex_);
  uint64_t next_event_sequence_ ABSL_GUARDED_BY(mutex_) = 1;
  // One watcher's wake; `mu` is held while it runs, so RemoveWatcher can
  // wait for a wake in flight on another thread.
  struct Watcher {
    explicit Watcher(std::function<void()> w) : wake(std::move(w)) {}
    const std::function<void()> wake;
    absl::Mutex mu;
    bool removed ABSL_GUARDED_BY(mu) = false;
    bool again ABSL_GUARDED_BY(mu) = false;  // the wake appended events itself
  };
  absl::Mutex watch_mu_;
  std::map<uint64_t, std::shared_ptr<Watcher>> watchers_ ABSL_GUARDED_BY(watch_mu_);
  uint64_t next_watcher_ ABSL_GUARDED_BY(watch_mu_) = 1;
  uint64_t next_ended_order_ ABSL_GUARDED_BY(mutex_) = 1;
  uint64_t next_wait_token_ ABSL_GUARDED_BY(mutex_) = 1;
};

}  // namespace pm::registry

#endif  // PM_REGISTRY_REGISTRY_H_
