package monitor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

// Duration is a time.Duration written as in Go ("90m", "24h") in the rules file.
type Duration time.Duration

// UnmarshalJSON reads "90m" (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err2 := json.Unmarshal(b, &secs); err2 != nil {
			return fmt.Errorf("a duration is written like \"90m\" or \"24h\", not %s", b)
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("a duration is written like \"90m\" or \"24h\", not %q", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the Go form.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// D is the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config holds every threshold of the rules. A region changes some in a JSON file (renkei serve --monitor-rules);
// what the file leaves out keeps its default. A rule is off when its count is 0.
type Config struct {
	// BulkAccess: one user opens (reads the images or record of) this many different patients within Window.
	// PerRole overrides Patients for a role (a radiologist reads many more patients than a clinic doctor).
	BulkAccess struct {
		Window   Duration       `json:"window"`
		Patients int            `json:"patients"`
		PerRole  map[string]int `json:"perRole"`
	} `json:"bulkAccess"`
	// BulkExport: one user (or API token) downloads this many different studies as DICOM files within Window.
	BulkExport struct {
		Window        Duration `json:"window"`
		Studies       int      `json:"studies"`
		TokenStudies  int      `json:"tokenStudies"`
		IncludeTokens bool     `json:"includeTokens"`
	} `json:"bulkExport"`
	// UnusualHours: a user active in an hour of the day (±1 hour) in which they were active on fewer than
	// RareShare of their past active hours, once at least MinDays days of their activity are known.
	UnusualHours struct {
		MinDays   int     `json:"minDays"`
		RareShare float64 `json:"rareShare"`
		TimeZone  string  `json:"timeZone"`
	} `json:"unusualHours"`
	// NoRelation: a user or token reads another institution's patient with no share, referral or consult.
	NoRelation struct {
		Enabled bool `json:"enabled"`
	} `json:"noRelation"`
	// BreakGlass: an emergency access not reviewed by the owning institution within Review.
	BreakGlass struct {
		Review Duration `json:"review"`
	} `json:"breakGlass"`
	// Logins: failed logins or second factors within Window: per login name (PerUser), per source address
	// (PerSource), different login names failing from one address (Spraying) or from anywhere (SprayingRegion).
	Logins struct {
		Window         Duration `json:"window"`
		PerUser        int      `json:"perUser"`
		PerSource      int      `json:"perSource"`
		Spraying       int      `json:"spraying"`
		SprayingRegion int      `json:"sprayingRegion"`
	} `json:"logins"`
	// UnknownAE: refused DICOM associations (an unregistered AE title or a wrong address) within Window.
	UnknownAE struct {
		Window       Duration `json:"window"`
		Associations int      `json:"associations"`
	} `json:"unknownAE"`
	// Enumeration: requests for UIDs that do not exist or are not visible (answered 404) by one caller within
	// Window.
	Enumeration struct {
		Window Duration `json:"window"`
		Denied int      `json:"denied"`
	} `json:"enumeration"`
	// TokenAddresses: one API token used from this many different addresses within Window.
	TokenAddresses struct {
		Window    Duration `json:"window"`
		Addresses int      `json:"addresses"`
	} `json:"tokenAddresses"`
	// NewNetwork: a user logs in from a network they never logged in from (an IPv4 /24 or IPv6 /48), once at least
	// MinLogins of their logins are known. Where the region names its networks (Known: a name and its CIDRs, e.g. a
	// hospital's LAN or the region's VPN), the alert says which one, or that it is none of them.
	NewNetwork struct {
		MinLogins int                 `json:"minLogins"`
		Known     map[string][]string `json:"known"`
	} `json:"newNetwork"`
	// SelfGrant: an administrator shares data with, invites, resets or creates an account for themselves.
	SelfGrant struct {
		Enabled bool `json:"enabled"`
	} `json:"selfGrant"`
	// Summary: the daily e-mail of open alerts to each institution's address, at this hour (local time); -1: none.
	Summary struct {
		Hour int `json:"hour"`
	} `json:"summary"`
}

// DefaultConfig is what ships: thresholds a clinic's or a hospital's day of normal work stays well below (see
// docs/decisions.md).
func DefaultConfig() Config {
	var c Config
	c.BulkAccess.Window, c.BulkAccess.Patients = Duration(time.Hour), 30
	c.BulkAccess.PerRole = map[string]int{"radiologist": 120}
	c.BulkExport.Window, c.BulkExport.Studies, c.BulkExport.TokenStudies = Duration(time.Hour), 20, 2000
	c.UnusualHours.MinDays, c.UnusualHours.RareShare, c.UnusualHours.TimeZone = 10, 0.02, "Asia/Tokyo"
	c.NoRelation.Enabled = true
	c.BreakGlass.Review = Duration(24 * time.Hour)
	c.Logins.Window, c.Logins.PerUser, c.Logins.PerSource, c.Logins.Spraying, c.Logins.SprayingRegion = Duration(15*time.Minute), 5, 10, 5, 20
	c.UnknownAE.Window, c.UnknownAE.Associations = Duration(10*time.Minute), 1
	c.Enumeration.Window, c.Enumeration.Denied = Duration(10*time.Minute), 20
	c.TokenAddresses.Window, c.TokenAddresses.Addresses = Duration(5*time.Minute), 2
	c.NewNetwork.MinLogins = 5
	c.SelfGrant.Enabled = true
	c.Summary.Hour = 8
	return c
}

// LoadConfig reads a rules file over the defaults. Unknown names are refused, so that a misspelt threshold does not
// silently keep its default.
func LoadConfig(path string) (Config, error) {
	c := DefaultConfig()
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("monitoring rules: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("monitoring rules %s: %v", path, err)
	}
	return c, c.check()
}

func (c Config) check() error {
	var bad []string
	for name, d := range map[string]Duration{"bulkAccess.window": c.BulkAccess.Window, "bulkExport.window": c.BulkExport.Window,
		"logins.window": c.Logins.Window, "unknownAE.window": c.UnknownAE.Window, "enumeration.window": c.Enumeration.Window,
		"tokenAddresses.window": c.TokenAddresses.Window, "breakGlass.review": c.BreakGlass.Review} {
		if d <= 0 {
			bad = append(bad, name+" must be a positive duration")
		}
	}
	if _, err := c.location(); err != nil {
		bad = append(bad, err.Error())
	}
	if _, err := c.knownNetworks(); err != nil {
		bad = append(bad, err.Error())
	}
	if c.Summary.Hour < -1 || c.Summary.Hour > 23 {
		bad = append(bad, "summary.hour must be 0 to 23, or -1 for no e-mail")
	}
	if len(bad) > 0 {
		return fmt.Errorf("monitoring rules: %s", strings.Join(bad, "; "))
	}
	return nil
}

// location is the region's time zone for hours of the day: Asia/Tokyo, which Go knows without the system's zone
// files, as UTC+9.
func (c Config) location() (*time.Location, error) {
	switch c.UnusualHours.TimeZone {
	case "", "Asia/Tokyo", "JST":
		return time.FixedZone("JST", 9*3600), nil
	case "UTC":
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(c.UnusualHours.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("unusualHours.timeZone %q is not a known time zone", c.UnusualHours.TimeZone)
	}
	return loc, nil
}

// knownNetwork is one of the region's named networks.
type knownNetwork struct {
	name     string
	prefixes []netip.Prefix
}

// knownNetworks parses NewNetwork.Known, in name order.
func (c Config) knownNetworks() ([]knownNetwork, error) {
	var out []knownNetwork
	for name, cidrs := range c.NewNetwork.Known {
		k := knownNetwork{name: name}
		for _, s := range cidrs {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("newNetwork.known %q: %q is not a network like 192.0.2.0/24", name, s)
			}
			k.prefixes = append(k.prefixes, p.Masked())
		}
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b knownNetwork) int { return strings.Compare(a.name, b.name) })
	return out, nil
}
