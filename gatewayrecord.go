package renkei

import "time"

// GatewayReport is what a hospital gateway (renkei gateway) last told renkei in its heartbeat, kept per gateway
// token: a gateway is known by its token, which belongs to one institution.
type GatewayReport struct {
	Token       int64  `json:"token"`
	TokenName   string `json:"tokenName"`
	Institution int64  `json:"-"`
	Name        string `json:"name"`
	Version     string `json:"version,omitempty"`
	AE          string `json:"ae"`
	Address     string `json:"address"` // where the heartbeat came from
	// The gateway's queue: images received from its modalities and not yet acknowledged by renkei.
	Instances int        `json:"instances"`
	Studies   int        `json:"studies"`
	Bytes     int64      `json:"bytes"`
	Oldest    *time.Time `json:"oldest,omitempty"`
	LastSent  *time.Time `json:"lastSent,omitempty"`
	Failures  int        `json:"failures"`
	LastError string     `json:"lastError,omitempty"`
	DiskFree  int64      `json:"diskFree"`
	SeenAt    time.Time  `json:"seenAt"`
	Revoked   bool       `json:"revoked"` // its token was revoked since
}
