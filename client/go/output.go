package client

import (
	"context"
	"io"

	"pm.example/client/pmv1"
)

// OutputOptions says where an output stream begins and whether it waits
// for more.
type OutputOptions struct {
	// From the oldest retained byte; otherwise from now, so only what the
	// process writes from here on.
	FromStart bool
	// Keep the stream open for new output until the process has ended and
	// its output is drained; otherwise end at what has been written so far.
	Follow bool
}

// OutputStream is a process's output, stdout and stderr in the order they
// were read, one chunk at a time, as bufio.Scanner reads lines:
//
//	out := c.Output(ctx, id, client.OutputOptions{FromStart: true})
//	defer out.Close()
//	for out.Next() {
//		chunk := out.Chunk() // chunk.Stream, chunk.Data, chunk.Offset
//	}
//	if err := out.Err(); err != nil { ... }
//
// It is not safe for concurrent use; cancel the Output call's context to
// end a Next that is waiting (a follow) from another goroutine.
type OutputStream struct {
	id     string
	cancel context.CancelFunc
	stream pmv1.ProcessManager_StreamOutputClient
	chunk  *pmv1.OutputChunk
	err    error
	done   bool
}

// Output opens the output of process id (a full id, a name or a unique
// prefix). Errors come from the stream's Err: NOT_FOUND for an unknown id,
// CANCELED when ctx was cancelled, DEADLINE_EXCEEDED past its deadline.
func (c *Client) Output(ctx context.Context, id string, opts OutputOptions) *OutputStream {
	ctx, cancel := context.WithCancel(ctx)
	s := &OutputStream{id: id, cancel: cancel}
	stream, err := c.pm.StreamOutput(ctx, &pmv1.StreamOutputRequest{
		Id:        id,
		FromStart: opts.FromStart,
		Follow:    opts.Follow,
	})
	if err != nil {
		s.finish(err)
	} else {
		s.stream = stream
	}
	return s
}

// Next waits for the next chunk and says whether there is one; false at
// the end of the stream, or on an error (see Err). A chunk may carry no
// data: a mark that a restarted process's next run began (RunStarted).
// Chunk.DroppedBefore counts bytes before it that were not retained: 0
// means none is missing.
func (s *OutputStream) Next() bool {
	if s.done {
		return false
	}
	chunk, err := s.stream.Recv()
	if err != nil {
		if err == io.EOF {
			err = nil
		}
		s.finish(err)
		return false
	}
	s.chunk = chunk
	return true
}

// Chunk is the chunk the last Next returned true for.
func (s *OutputStream) Chunk() *pmv1.OutputChunk { return s.chunk }

// Err is why the stream ended: nil at its end (for a follow, once the
// process has ended and its output is drained) or after Close, else an
// *Error.
func (s *OutputStream) Err() error { return s.err }

// Close ends the stream early (the gateway frees its slot); it is a no-op
// once the stream has ended.
func (s *OutputStream) Close() {
	if !s.done {
		s.finish(nil)
	}
}

func (s *OutputStream) finish(err error) {
	s.done = true
	s.chunk = nil
	s.err = wrap("output", s.id, err)
	// Ends the call on the gateway too when it was left half read.
	s.cancel()
}
