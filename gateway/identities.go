package gateway

import (
	"context"
	"fmt"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/mailmap"
)

// The identity and subscription caches are reloaded when the store's
// accounts generation moved since they were loaded (any process changing
// users, identities, contacts or subscriptions moves it), so an address
// added with the CLI is used at once. On PostgreSQL the generation a
// process sees trails a commit elsewhere by a notification's trip: a miss
// on a key the caller needs (localKey) therefore looks once more with the
// generation read from the database itself.

// localIdentity converts a stored identity into protocol keys and checks
// that the keys really belong to the stored address.
func localIdentity(m mailmap.Identity) (*identity.Identity, error) {
	a, err := address.Decode(m.Address)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", m.Address, err)
	}
	id, err := identity.FromKeys(a.Version, a.Stream, m.SigningKey, m.EncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", m.Address, err)
	}
	if id.Address != a {
		return nil, fmt.Errorf("identity %s: keys give %s", m.Address, id.Address)
	}
	id.NonceTrialsPerByte = max(m.NonceTrialsPerByte, 1)
	id.ExtraBytes = max(m.ExtraBytes, 1)
	return id, nil
}

// identityCache holds every local identity with parsed keys, for trial
// decryption and getpubkey answers. A chan joined by several users is one
// key with several owners. It is not changed once loaded, except stale.
type identityCache struct {
	gen    uint64               // the accounts generation it was loaded at
	stale  bool                 // guarded by Gateway.idMu: reload at next use (after a change we made)
	stored []mailmap.Identity   // every row
	keys   []*identity.Identity // one per distinct address
	owners [][]int              // keys index → indexes into stored, first joiner first
	byAddr map[address.Address]int
	byTag  map[[32]byte]int
	byRipe map[[20]byte]int
}

// owner returns the row of a key owned by the user, if any.
func (c *identityCache) owner(i int, userID int64) (mailmap.Identity, bool) {
	for _, j := range c.owners[i] {
		if c.stored[j].UserID == userID {
			return c.stored[j], true
		}
	}
	return mailmap.Identity{}, false
}

// identities returns the identity cache, reloaded if account data changed.
func (g *Gateway) identities(ctx context.Context) (*identityCache, error) {
	gen, err := g.store.AccountsGeneration(ctx)
	if err != nil {
		return nil, fmt.Errorf("load identities: %w", err)
	}
	return g.identitiesAt(ctx, gen)
}

// identitiesAt returns the cache, reloading it unless it was loaded at gen.
// gen must have been read before the call, so what is loaded is at least as
// new as gen.
func (g *Gateway) identitiesAt(ctx context.Context, gen uint64) (*identityCache, error) {
	g.idMu.Lock()
	defer g.idMu.Unlock()
	if g.idCache != nil && !g.idCache.stale && g.idCache.gen == gen {
		return g.idCache, nil
	}
	all, err := g.store.AllIdentities(ctx)
	if err != nil {
		return nil, fmt.Errorf("load identities: %w", err)
	}
	c := &identityCache{gen: gen, byAddr: map[address.Address]int{}, byTag: map[[32]byte]int{}, byRipe: map[[20]byte]int{}}
	// Deriving public keys costs two point multiplications per identity:
	// keep the parsed keys of addresses that were already cached.
	prev := map[string]*identity.Identity{}
	if g.idCache != nil {
		for _, id := range g.idCache.keys {
			prev[id.Address.String()] = id
		}
	}
	for _, m := range all {
		a, err := address.Decode(m.Address)
		if err != nil {
			g.log.Error("skipping unusable identity", "address", m.Address, "err", err)
			continue
		}
		if i, ok := c.byAddr[a]; ok {
			c.owners[i] = append(c.owners[i], len(c.stored))
			c.stored = append(c.stored, m)
			continue
		}
		id, ok := prev[m.Address]
		if !ok || id.NonceTrialsPerByte != max(m.NonceTrialsPerByte, 1) || id.ExtraBytes != max(m.ExtraBytes, 1) {
			if id, err = localIdentity(m); err != nil {
				g.log.Error("skipping unusable identity", "address", m.Address, "err", err)
				continue
			}
		}
		i := len(c.keys)
		c.owners = append(c.owners, []int{len(c.stored)})
		c.stored = append(c.stored, m)
		c.keys = append(c.keys, id)
		c.byAddr[id.Address] = i
		c.byTag[id.Address.Tag()] = i
		c.byRipe[id.Address.Ripe] = i
	}
	g.idCache = c
	return c, nil
}

// localKey returns the cache and the index in it of the local identity
// with address a; ok is false when there is none. When a is not in the
// cache, the cache is reloaded once if the accounts generation read from
// the database itself (not the in-memory one, which may trail another
// process's commit) says it is out of date: a miss alone never means the
// identity does not exist.
func (g *Gateway) localKey(ctx context.Context, a address.Address) (c *identityCache, i int, ok bool, err error) {
	return g.localKeyOf(ctx, a, 0)
}

// localKeyOf is localKey for an identity of one user (userID 0: of
// anyone): a key in the cache without that user among its owners (a chan
// the user just joined, that others had joined before) also reloads once.
func (g *Gateway) localKeyOf(ctx context.Context, a address.Address, userID int64) (c *identityCache, i int, ok bool, err error) {
	found := func(c *identityCache) (int, bool) {
		i, ok := c.byAddr[a]
		if ok && userID != 0 {
			_, ok = c.owner(i, userID)
		}
		return i, ok
	}
	if c, err = g.identities(ctx); err != nil {
		return nil, 0, false, err
	}
	if i, ok = found(c); ok {
		return c, i, true, nil
	}
	gen, err := g.store.ReadAccountsGeneration(ctx)
	if err != nil {
		return nil, 0, false, fmt.Errorf("load identities: %w", err)
	}
	if c, err = g.identitiesAt(ctx, gen); err != nil {
		return nil, 0, false, err
	}
	i, ok = found(c)
	return c, i, ok, nil
}

// invalidateIdentities drops the identity cache (after a change we made).
func (g *Gateway) invalidateIdentities() {
	g.idMu.Lock()
	if g.idCache != nil {
		g.idCache.stale = true // reload, keeping the parsed keys
	}
	g.subsCache = nil
	g.idMu.Unlock()
}

type subscriptionCache struct {
	gen   uint64 // the accounts generation it was loaded at
	subs  []mailmap.Subscription
	addrs []address.Address // distinct
}

// subscriptions returns every subscription, reloaded if account data changed.
func (g *Gateway) subscriptions(ctx context.Context) (*subscriptionCache, error) {
	gen, err := g.store.AccountsGeneration(ctx)
	if err != nil {
		return nil, fmt.Errorf("load subscriptions: %w", err)
	}
	g.idMu.Lock()
	defer g.idMu.Unlock()
	if g.subsCache != nil && g.subsCache.gen == gen {
		return g.subsCache, nil
	}
	all, err := g.store.AllSubscriptions(ctx)
	if err != nil {
		return nil, fmt.Errorf("load subscriptions: %w", err)
	}
	c := &subscriptionCache{gen: gen, subs: all}
	seen := map[address.Address]bool{}
	for _, s := range all {
		a, err := address.Decode(s.Address)
		if err != nil {
			continue
		}
		if !seen[a] {
			seen[a] = true
			c.addrs = append(c.addrs, a)
		}
	}
	g.subsCache = c
	return c, nil
}
