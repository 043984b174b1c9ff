// The write side of a peer: control packets, announcements, the greeting
// after the handshake, and requested objects, drained by one goroutine.

package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/wire"
)

// queue adds a control packet.
func (p *peer) queue(m wire.Message) {
	pkt := wire.EncodePacket(p.n.net.Magic, m.Command(), m.Encode())
	p.mu.Lock()
	if p.closing && !p.flush {
		p.mu.Unlock()
		return
	}
	p.ctrl = append(p.ctrl, pkt)
	p.ctrlBytes += len(pkt)
	over := p.ctrlBytes > maxCtrlBytes
	p.mu.Unlock()
	if over {
		p.close(errSlowPeer, false)
		return
	}
	p.signal()
}

func (p *peer) queueAnnounce(h wire.InvHash) {
	p.mu.Lock()
	p.announceQ = append(p.announceQ, h)
	over := len(p.announceQ) > 4*wire.MaxInvSend
	p.mu.Unlock()
	if over {
		p.close(errSlowPeer, false)
		return
	}
	p.signal()
}

func (p *peer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// writeLoop sends queued packets: control packets first, then the greeting
// after establishment, announcements, and requested objects.
func (p *peer) writeLoop() {
	for {
		select {
		case <-p.quit:
			p.mu.Lock()
			flush := p.flush
			p.mu.Unlock()
			if flush {
				_ = p.writeCtrl()
			}
			p.mu.Lock()
			_ = p.conn.Close()
			p.mu.Unlock()
			return
		case <-p.wake:
		}
		if err := p.writeAvailable(); err != nil {
			p.close(fmt.Errorf("write: %w", err), false)
		}
	}
}

func (p *peer) writeAvailable() error {
	for {
		select {
		case <-p.quit:
			return nil
		default:
		}
		if err := p.writeCtrl(); err != nil {
			return err
		}
		p.mu.Lock()
		greet := p.greet
		p.greet = false
		var inv []wire.InvHash
		if len(p.announceQ) > 0 {
			k := min(len(p.announceQ), wire.MaxInvSend)
			inv = slices.Clone(p.announceQ[:k])
			p.announceQ = p.announceQ[k:]
			if len(p.announceQ) == 0 {
				p.announceQ = nil
			}
		}
		var ups []wire.InvHash
		if len(p.uploads) > 0 {
			k := min(len(p.uploads), uploadBatch)
			ups = slices.Clone(p.uploads[:k])
			p.uploads = p.uploads[k:]
			for _, h := range ups {
				delete(p.uploadSet, h)
			}
			if len(p.uploads) == 0 {
				p.uploads = nil
			}
		}
		p.mu.Unlock()
		if !greet && inv == nil && ups == nil {
			return nil
		}
		if greet {
			if err := p.sendGreeting(); err != nil {
				return err
			}
		}
		if inv != nil {
			if err := p.write(wire.CmdInv, (&wire.MsgInv{Hashes: inv}).Encode()); err != nil {
				return err
			}
		}
		for _, h := range ups {
			if err := p.serve(h); err != nil {
				return err
			}
		}
	}
}

func (p *peer) writeCtrl() error {
	for {
		p.mu.Lock()
		pkts := p.ctrl
		p.ctrl, p.ctrlBytes = nil, 0
		p.mu.Unlock()
		if len(pkts) == 0 {
			return nil
		}
		for _, pkt := range pkts {
			if err := p.writeRaw(pkt); err != nil {
				return err
			}
		}
	}
}

// sendGreeting sends what PyB sends right after the handshake
// (docs/protocol.md §3.3 step 5): an addr with known nodes and the inv of
// every unexpired object of the common streams, in chunks of at most 49 999
// hashes.
func (p *peer) sendGreeting() error {
	n := p.n
	v := p.version.Load()
	now := n.cfg.Now()
	addrs := n.book.sample(v.Streams, now, n.class, p.key)
	for len(addrs) > 0 {
		k := min(len(addrs), wire.MaxAddrPerMsg)
		if err := p.write(wire.CmdAddr, (&wire.MsgAddr{Addrs: addrs[:k]}).Encode()); err != nil {
			return err
		}
		addrs = addrs[k:]
	}
	for _, s := range n.streams {
		if !slices.Contains(v.Streams, s) {
			continue
		}
		hs, err := n.inv.Hashes(n.ctx, s, now)
		if err != nil {
			if n.ctx.Err() != nil {
				return ErrClosed
			}
			n.log.Error("listing inventory failed", "err", err)
			continue
		}
		p.known.addMany(hs)
		for len(hs) > 0 {
			k := min(len(hs), wire.MaxInvSend)
			if err := p.write(wire.CmdInv, (&wire.MsgInv{Hashes: hs[:k]}).Encode()); err != nil {
				return err
			}
			hs = hs[k:]
		}
	}
	return nil
}

// serve sends one requested object, unless it is unknown or expired.
func (p *peer) serve(h wire.InvHash) error {
	n := p.n
	raw, err := n.inv.Get(n.ctx, h)
	if err != nil {
		if !errors.Is(err, inventory.ErrNotFound) && n.ctx.Err() == nil {
			n.log.Error("inventory read failed", "err", err)
		}
		return nil
	}
	if len(raw) < 16 || int64(min(binary.BigEndian.Uint64(raw[8:16]), 1<<62)) <= n.cfg.Now().Unix() {
		return nil
	}
	p.known.add(h)
	if err := p.write(wire.CmdObject, raw); err != nil {
		return err
	}
	n.objectsRelayed.Add(1)
	if n.renew.fetched(p, h, n.cfg.Now()) {
		n.renewsScheduled.Add(1)
		p.log.Debug("connection renewal scheduled: PyBitmessage 0.6 peer fetched our msg", "msg", h.String())
	}
	return nil
}

func (p *peer) write(cmd string, payload []byte) error {
	return p.writeRaw(wire.EncodePacket(p.n.net.Magic, cmd, payload))
}

func (p *peer) writeRaw(pkt []byte) error {
	p.mu.Lock()
	conn := p.conn
	dl := time.Now().Add(p.n.cfg.WriteTimeout)
	if p.closing {
		dl = p.quitAt.Add(flushTimeout)
	}
	_ = conn.SetWriteDeadline(dl)
	p.mu.Unlock()
	if _, err := conn.Write(pkt); err != nil {
		return err
	}
	p.lastSend.Store(time.Now().UnixNano())
	p.bytesOut.Add(uint64(len(pkt)))
	p.n.bytesOut.Add(uint64(len(pkt)))
	return nil
}
