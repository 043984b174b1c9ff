package mailmap

import "context"

// OpenAtVersion opens like Open but brings the schema only up to version,
// so tests can make rows as an older bmgate did and watch them migrate.
func OpenAtVersion(ctx context.Context, dsn string, opts Options, version int64) (Store, error) {
	s, err := open(ctx, dsn, opts, version)
	if err != nil {
		return nil, err
	}
	if !opts.NoHeaderBackfill {
		s.startHeaderBackfill()
	}
	return s, nil
}

// SealIdentityKeys seals an identity's private keys as AddIdentity stores
// them, for rows written with raw SQL.
func SealIdentityKeys(s Store, address string, signing, encryption []byte) (sk, ek []byte, err error) {
	st := s.(*sqlStore)
	if sk, err = st.keys.seal(signing, signingContext(address)); err != nil {
		return nil, nil, err
	}
	ek, err = st.keys.seal(encryption, encryptionContext(address))
	return sk, ek, err
}

// ChanFolder is the migration's copy of gateway.ChanFolder.
var ChanFolder = chanFolder
