// OutputSender against a real log_store service over a unix socket: large
// pieces go through the shared arena once the store has mapped it, inline
// otherwise, and every slot is free again once the store has the bytes.
#include "supervisor/output_sender.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>

#include "absl/synchronization/notification.h"
#include "common/output_arena.h"
#include "common/server.h"
#include "gtest/gtest.h"
#include "log_store/log_store.h"
#include "log_store/log_store_service.h"
#include "segment_log/reader.h"
#include "supervisor/event_loop.h"

namespace pm::supervisor {
namespace {

using ::pm::v1::OutputChunk;

constexpr char kId[] = "00000000-0000-4000-8000-000000000001";
constexpr size_t kSlot = 64 << 10;

class OutputSenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc_init();
    char dir_template[] = "/tmp/pm_os.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    log_store::LogStore::Options store_options;
    store_options.state_dir = dir_;
    store_ = log_store::LogStore::Create(store_options).value();
    service_ = std::make_unique<log_store::LogStoreService>(store_.get());
    grpc::ServerBuilder builder;
    ConfigureServerBuilder(builder);
    builder.AddListeningPort("unix:" + dir_ + "/ls.sock",
                             grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = pm::internal::v1::LogStore::NewStub(grpc::CreateChannel(
        "unix:" + dir_ + "/ls.sock", grpc::InsecureChannelCredentials()));
    ASSERT_TRUE(loop_.Init().ok());
    thread_ = std::thread([this] { loop_.Run(); });
  }

  void TearDown() override {
    OnLoop([this] { sender_.reset(); });
    service_->Shutdown();
    server_->Shutdown();
    server_->Wait();
    loop_.Quit();
    thread_.join();
    std::filesystem::remove_all(dir_);
    grpc_shutdown();
  }

  void OnLoop(std::function<void()> fn) {
    absl::Notification done;
    ASSERT_TRUE(loop_.Post([&] {
      fn();
      done.Notify();
    }));
    done.WaitForNotification();
  }

  // Makes the sender and waits until the store has answered its Open.
  void ConnectWith(std::shared_ptr<OutputArena> arena) {
    OutputSenderOptions options;
    options.arena = std::move(arena);
    absl::Notification opened;
    OnLoop([&] {
      sender_ = std::make_shared<OutputSender>(&loop_, stub_.get(), options);
      sender_->set_on_change([this] {
        if (sender_->done() && !done_.HasBeenNotified()) done_.Notify();
      });
      EXPECT_FALSE(sender_->TakeSlot().has_value());  // not before the store says
      sender_->Connect(kId, [&] { opened.Notify(); });
    });
    opened.WaitForNotification();
  }

  std::string Stored() {
    std::string bytes;
    absl::StatusOr<std::shared_ptr<log_store::OutputLog>> log = store_->Find(kId);
    if (!log.ok()) return bytes;
    absl::StatusOr<std::unique_ptr<segment_log::Reader>> reader =
        (*log)->OpenReader();
    if (!reader.ok()) return bytes;
    uint64_t cursor = 0;
    while (true) {
      absl::StatusOr<std::optional<segment_log::Chunk>> chunk =
          (*reader)->Read(cursor);
      if (!chunk.ok() || !*chunk || (*chunk)->data.empty()) break;
      bytes += (*chunk)->data;
      cursor = (*chunk)->offset + (*chunk)->data.size();
    }
    return bytes;
  }

  std::string dir_;
  std::unique_ptr<log_store::LogStore> store_;
  std::unique_ptr<log_store::LogStoreService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<pm::internal::v1::LogStore::Stub> stub_;
  EventLoop loop_;
  std::thread thread_;
  std::shared_ptr<OutputSender> sender_;  // loop thread
  absl::Notification done_;
};

TEST_F(OutputSenderTest, LargePiecesGoThroughTheArenaAndEverySlotComesBack) {
  absl::StatusOr<std::shared_ptr<OutputArena>> arena = OutputArena::Create(kSlot, 4);
  ASSERT_TRUE(arena.ok()) << arena.status();
  ConnectWith(*arena);
  std::string expected;
  OnLoop([&] {
    for (int i = 0; i < 3; ++i) {
      std::optional<OutputArena::Slot> slot = sender_->TakeSlot();
      ASSERT_TRUE(slot.has_value()) << "piece " << i;
      memset(slot->data(), 'a' + i, kSlot);
      expected.append(kSlot, static_cast<char>('a' + i));
      sender_->AppendShared(OutputChunk::STREAM_STDOUT, *std::move(slot), kSlot);
    }
    sender_->Append(OutputChunk::STREAM_STDERR, "and a line inline\n");
    expected += "and a line inline\n";
    sender_->Close();
  });
  done_.WaitForNotification();
  EXPECT_EQ(Stored(), expected);
  EXPECT_EQ((*arena)->free_slots(), 4u);
}

TEST_F(OutputSenderTest, ACancelledSenderGivesItsSlotsBackAndTakesNoMore) {
  absl::StatusOr<std::shared_ptr<OutputArena>> arena = OutputArena::Create(kSlot, 4);
  ASSERT_TRUE(arena.ok()) << arena.status();
  ConnectWith(*arena);
  absl::Notification all_free;
  OnLoop([&] {
    sender_->set_on_change([&] {
      if ((*arena)->free_slots() == 4 && !all_free.HasBeenNotified()) all_free.Notify();
    });
    for (int i = 0; i < 3; ++i) {
      std::optional<OutputArena::Slot> slot = sender_->TakeSlot();
      ASSERT_TRUE(slot.has_value());
      sender_->AppendShared(OutputChunk::STREAM_STDOUT, *std::move(slot), kSlot);
    }
    sender_->Cancel();
    // Nothing more will be sent: no slot is handed out to be stranded.
    EXPECT_FALSE(sender_->TakeSlot().has_value());
    // Only the piece a write may still point at is held; it goes when the
    // write is done.
    EXPECT_GE((*arena)->free_slots(), 3u);
    if ((*arena)->free_slots() == 4) all_free.Notify();
  });
  all_free.WaitForNotification();
  EXPECT_EQ((*arena)->free_slots(), 4u);
  // The callback refers to this test's locals; later changes are not ours.
  OnLoop([&] { sender_->set_on_change(nullptr); });
}

TEST_F(OutputSenderTest, AStoreThatCannotMapTheArenaGetsEverythingInline) {
  // The store refuses an arena that is not pm's; the sender must not offer
  // slots, and output still arrives whole.
  absl::StatusOr<std::shared_ptr<OutputArena>> arena =
      OutputArena::Create(kSlot, 4, "not-a-pm-arena");
  ASSERT_TRUE(arena.ok()) << arena.status();
  ConnectWith(*arena);
  OnLoop([&] {
    EXPECT_FALSE(sender_->TakeSlot().has_value());
    sender_->Append(OutputChunk::STREAM_STDOUT, std::string(kSlot, 'z'));
    sender_->Close();
  });
  done_.WaitForNotification();
  EXPECT_EQ(Stored(), std::string(kSlot, 'z'));
  EXPECT_EQ((*arena)->free_slots(), 4u);
}

}  // namespace
}  // namespace pm::supervisor
