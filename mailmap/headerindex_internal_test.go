package mailmap

import (
	"reflect"
	"testing"
	"time"
)

// FuzzEnvelopePacking: the stored envelope and values read back as built,
// dates to the instant and zone offset ENVELOPE shows; damaged bytes are
// refused, never misread into a panic.
func FuzzEnvelopePacking(f *testing.F) {
	f.Add([]byte("From: Bob <bob@example.test>\r\nTo: a@b, c@d\r\nSubject: x\r\nDate: Mon, 02 Jan 2006 15:04:05 -0700\r\n" +
		"In-Reply-To: <a@x> <b@y>\r\nMessage-ID: <m@x>\r\n\r\nbody"))
	f.Add([]byte("Subject: =?UTF-8?B?Q2Fmw6k=?=\r\nDate: 1 Jan 1800 00:00:00 +1400\r\n\r\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ih := IndexHeader(raw)
		e, err := unpackEnvelope(packEnvelope(ih.Envelope))
		if err != nil {
			t.Fatal(err)
		}
		a, b := ih.Envelope, e
		if a.Date.IsZero() != b.Date.IsZero() || !a.Date.Equal(b.Date) || a.Date.Format(time.RFC1123Z) != b.Date.Format(time.RFC1123Z) {
			t.Fatalf("date %v, want %v", b.Date, a.Date)
		}
		a.Date, b.Date = time.Time{}, time.Time{}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("envelope %+v, want %+v", b, a)
		}
		for _, vals := range [][]string{ih.From, ih.To, ih.Cc, ih.Bcc, ih.Subject} {
			p := packValues(vals)
			got, err := unpackValues(p, p == nil)
			if err != nil || !reflect.DeepEqual(got, vals) {
				t.Fatalf("values %q → %q, %v", vals, got, err)
			}
		}
		// Damaged (truncated, or taken for one) bytes: an error or a value, no panic.
		unpackEnvelope(raw)
		unpackValues(raw, false)
		if p := packEnvelope(ih.Envelope); len(p) > 1 {
			if _, err := unpackEnvelope(p[:len(p)-1]); err == nil {
				t.Fatalf("a truncated envelope was accepted")
			}
		}
	})
}
