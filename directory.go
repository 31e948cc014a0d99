package renkei

import "time"

// Profile is what an institution tells the region about itself, kept by its administrator or its 地域連携室: what
// it does, with what, where and when, and whom to call. Everyone in the region may read it.
type Profile struct {
	Institution int64 `json:"-"`
	// Departments (診療科) and specialties, in the words the institution uses, e.g. "脳神経外科", "脳卒中".
	Departments []string `json:"departments"`
	Specialties []string `json:"specialties"`
	// Equipment, from EquipmentKinds where it fits (free words are kept too).
	Equipment []string `json:"equipment"`
	Address   string   `json:"address"`
	// Latitude and Longitude in degrees (WGS 84); both 0 when unknown (then the institution has no distance).
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
	Hours     string  `json:"hours"` // 診療時間, as written
	Phone     string  `json:"phone"` // the main number
	// Contact is the 地域連携室: name, phone, fax, e-mail.
	ContactName  string `json:"contactName"`
	ContactPhone string `json:"contactPhone"`
	ContactFax   string `json:"contactFax"`
	ContactEmail string `json:"contactEmail"`
	// CareFunctions, when not nil, replace the institution's care functions (病床機能) with these.
	CareFunctions []string `json:"careFunctions,omitempty"`
	// Accepts lists what kinds of referral it takes, from ReferralAcceptances.
	Accepts   []string  `json:"accepts"`
	UpdatedAt time.Time `json:"updatedAt"`
	UpdatedBy string    `json:"updatedBy"`
}

// EquipmentKinds are the equipment words the directory offers to choose from.
var EquipmentKinds = []string{"CT", "MRI", "PET", "血管造影", "透析", "内視鏡", "マンモグラフィ", "放射線治療", "ICU", "HCU", "NICU", "ヘリポート"}

// ReferralAcceptances are the kinds of patient an institution may say it accepts.
var ReferralAcceptances = []string{"紹介", "救急", "読影依頼", "転院", "在宅移行", "レスパイト", "介護施設入所"}

// WardKinds are the kinds of bed capacity is reported for.
var WardKinds = []string{"一般", "ICU", "HCU", "回復期リハビリテーション", "地域包括ケア", "療養", "精神", "介護"}

// Emergency acceptance statuses.
const (
	EmergencyYes     = "yes"     // accepting emergencies
	EmergencyNo      = "no"      // not now
	EmergencyPartial = "partial" // only the listed specialties
)

// CapacityItem is one thing an institution reports about its capacity now, with its own time: whether it accepts
// emergencies, free beds of one ward kind, the specialists on call today, a note. An item older than the region's
// staleness limit is shown as stale, never as current.
type CapacityItem struct {
	Key       string    `json:"key"` // "emergency", "beds:<ward kind>", "oncall", "note"
	Emergency string    `json:"emergency,omitempty"`
	Only      []string  `json:"only,omitempty"` // the specialties accepted when Emergency is partial
	Beds      *int      `json:"beds,omitempty"`
	OnCall    []string  `json:"onCall,omitempty"`
	Note      string    `json:"note,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
	UpdatedBy string    `json:"updatedBy"`
}

// Capacity keys.
const (
	CapacityEmergency  = "emergency"
	CapacityOnCall     = "oncall"
	CapacityNote       = "note"
	CapacityBedsPrefix = "beds:"
)

// DirectoryEntry is one institution as the directory shows it: who, the profile, the current capacity.
type DirectoryEntry struct {
	Institution Institution
	Profile     Profile
	Capacity    []CapacityItem
}

// DirectoryQuery is a search of the directory: "who can take a stroke patient now within 20 km".
type DirectoryQuery struct {
	Functions   []string // any of these care functions
	Specialties []string // all of these, among specialties and departments (or on call, with OnCallNow)
	Equipment   []string // all of these
	Accepts     string   // a kind of referral it accepts
	Emergency   bool     // accepting emergencies now (fresh "yes", or "partial" covering Specialties)
	BedsKind    string   // a fresh report of at least one free bed of this ward kind
	OnCallNow   bool     // Specialties must be on call today (fresh)
	WithinKm    float64  // 0: any distance
	From        int64    // the searcher's institution: distances are from it
	Text        string   // part of the name
	Sort        string   // "distance" (default) or "fresh"
	Limit       int
}
