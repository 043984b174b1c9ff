// Package logtest is a slog handler for tests that keeps every record with
// its attribute values as text (the logger's own attributes included), so a
// test can check what reaches the log before any handler quotes it.
package logtest

import (
	"context"
	"log/slog"
	"sync"
)

// Record is one log line.
type Record struct {
	Msg   string
	Attrs map[string]string
}

// Handler keeps every record; handlers made by WithAttrs share its list.
type Handler struct {
	mu    *sync.Mutex
	recs  *[]Record
	attrs []slog.Attr
}

// New returns an empty Handler.
func New() *Handler { return &Handler{mu: new(sync.Mutex), recs: new([]Record)} }

func (h *Handler) Enabled(context.Context, slog.Level) bool { return true }

func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	rec := Record{Msg: r.Message, Attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { rec.Attrs[a.Key] = a.Value.String(); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, rec)
	return nil
}

func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &h2
}

func (h *Handler) WithGroup(string) slog.Handler { return h }

// Records returns a copy of what was logged so far.
func (h *Handler) Records() []Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Record(nil), *h.recs...)
}
