package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"renkei/sqlstore"
)

// auditKeyFile is the audit key's file in the data folder: the Ed25519 seed that signs checkpoints of the audit
// chain, readable by the server's user only. Keep a copy of it (or of its public half) away from the data folder:
// whoever can rewrite both the database and this key can rewrite history.
const auditKeyFile = "audit-key"

// auditKey reads the data folder's audit key, creating it at first start.
func auditKey(path string) (*sqlstore.AuditKey, error) {
	k, err := readAuditKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	seed := make([]byte, ed25519.SeedSize)
	rand.Read(seed)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(f, "renkei-audit-ed25519 %s\n", hex.EncodeToString(seed)); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return readAuditKey(path)
}

func readAuditKey(path string) (*sqlstore.AuditKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kind, hexSeed, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	seed, err := hex.DecodeString(hexSeed)
	if kind != "renkei-audit-ed25519" || err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s is not a renkei audit key", path)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	sum := sha256.Sum256(priv.Public().(ed25519.PublicKey))
	return &sqlstore.AuditKey{ID: hex.EncodeToString(sum[:8]), Private: priv}, nil
}
