package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// benchMessage is a typical small mail (about 2 KiB).
func benchMessage(i int) []byte {
	return fmt.Appendf(nil, "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: message %d\r\n"+
		"Date: Mon, 23 Nov 2026 01:02:03 +0000\r\nMessage-ID: <%d.bench@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s",
		i, i, strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 32))
}

// BenchDeliver measures AppendMessage into one mailbox from 1 or several
// goroutines, reporting msgs/s. Each append is a committed transaction.
func BenchDeliver(b *testing.B, open func(tb testing.TB) mailmap.Store, goroutines int) {
	s := open(b)
	u, err := s.CreateUser(context.Background(), "bench", "bench")
	if err != nil {
		b.Fatal(err)
	}
	in, err := s.Mailbox(context.Background(), u.ID, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	msg := benchMessage(0)
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	var wg sync.WaitGroup
	var next sync.Mutex
	left := b.N
	for range goroutines {
		wg.Go(func() {
			for {
				next.Lock()
				if left == 0 {
					next.Unlock()
					return
				}
				left--
				next.Unlock()
				if _, err := s.AppendMessage(context.Background(), u.ID, in.ID, msg, nil, time.Time{}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchList measures Messages (metadata, UID order) over a mailbox of n
// messages.
func BenchList(b *testing.B, open func(tb testing.TB) mailmap.Store, n int) {
	ctx := context.Background()
	s := open(b)
	u, err := s.CreateUser(ctx, "bench", "bench")
	if err != nil {
		b.Fatal(err)
	}
	in, err := s.Mailbox(ctx, u.ID, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	// 100 distinct messages, then copies (cheap: bodies are shared) up to n.
	for i := range min(n, 100) {
		if _, err := s.AppendMessage(ctx, u.ID, in.ID, benchMessage(i), []string{`\Seen`}, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
	for count := min(n, 100); count < n; {
		k := min(count, n-count)
		all := make([]uint32, k)
		for i := range all {
			all[i] = uint32(i + 1)
		}
		_, dst, err := s.CopyMessages(ctx, u.ID, in.ID, all, in.ID)
		if err != nil {
			b.Fatal(err)
		}
		count += len(dst)
	}
	b.ResetTimer()
	for b.Loop() {
		ms, err := s.Messages(ctx, u.ID, in.ID)
		if err != nil {
			b.Fatal(err)
		}
		if len(ms) != n {
			b.Fatalf("listed %d messages, want %d", len(ms), n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
