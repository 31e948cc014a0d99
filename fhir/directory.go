package fhir

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"renkei"
)

// This file writes the regional directory (renkei.DirectoryEntry) as the FHIR resources IHE mCSD (Mobile Care
// Services Discovery, https://profiles.ihe.net/ITI/mCSD/) uses for facilities: per institution an Organization
// and a Location that together are the mCSD "facility" (profiles IHE.mCSD.FacilityOrganization and
// IHE.mCSD.FacilityLocation), and a HealthcareService saying what is offered there and how much of it is free now.

// Profiles of IHE mCSD (canonical URLs) that DirectoryBundle claims in meta.profile. The facility type code is
// the one of mCSD 3.8 and later (SystemMCSDTypes#facility), not the urn:ihe:iti:mcsd:2019:facility of before.
const (
	ProfileMCSDOrganization         = "https://profiles.ihe.net/ITI/mCSD/StructureDefinition/IHE.mCSD.Organization"
	ProfileMCSDFacilityOrganization = "https://profiles.ihe.net/ITI/mCSD/StructureDefinition/IHE.mCSD.FacilityOrganization"
	ProfileMCSDLocation             = "https://profiles.ihe.net/ITI/mCSD/StructureDefinition/IHE.mCSD.Location"
	ProfileMCSDFacilityLocation     = "https://profiles.ihe.net/ITI/mCSD/StructureDefinition/IHE.mCSD.FacilityLocation"
	ProfileMCSDLocationDistance     = "https://profiles.ihe.net/ITI/mCSD/StructureDefinition/IHE.mCSD.LocationDistance" // requires position
	ProfileMCSDHealthcareService    = "https://profiles.ihe.net/ITI/mCSD/StructureDefinition/IHE.mCSD.HealthcareService"
)

// Code systems and the extension renkei defines for the directory. The base is a placeholder until the region
// publishes its canonical URL; codes are renkei's own Japanese words (FHIR codes may be any non-blank Unicode),
// so a code means exactly what the directory shows, and a word outside renkei's lists is written as text only.
const (
	DirectoryBase             = "https://renkei.example/fhir"
	SystemInstitutionKind     = DirectoryBase + "/CodeSystem/institution-kind"    // renkei.InstitutionKind: hospital, clinic, …
	SystemCareFunction        = DirectoryBase + "/CodeSystem/care-function"       // renkei.CareFunctions: 高度急性期 … 介護
	SystemEquipment           = DirectoryBase + "/CodeSystem/equipment"           // renkei.EquipmentKinds: CT, MRI, …
	SystemReferralAcceptance  = DirectoryBase + "/CodeSystem/referral-acceptance" // renkei.ReferralAcceptances: 紹介, 救急, …
	SystemWardKind            = DirectoryBase + "/CodeSystem/ward-kind"           // renkei.WardKinds: 一般, ICU, …
	ExtensionCapacity         = DirectoryBase + "/StructureDefinition/capacity"   // one renkei.CapacityItem
	SystemMCSDTypes           = "https://profiles.ihe.net/ITI/mCSD/CodeSystem/IHE.mCSD.Organization.Location.Types"
	SystemOrganizationType    = "http://terminology.hl7.org/CodeSystem/organization-type"
	SystemRoleCode            = "http://terminology.hl7.org/CodeSystem/v3-RoleCode" // ServiceDeliveryLocationRoleType
	SystemLocationPhysical    = "http://terminology.hl7.org/CodeSystem/location-physical-type"
	SystemServiceReferralMeth = "http://terminology.hl7.org/CodeSystem/service-referral-method"
)

// kinds gives each institution kind its Japanese name and its HL7 v3 ServiceDeliveryLocationRoleType, the value
// set the FHIR R4 Location.type binding names. The region operator has none: it is not a care facility.
var kinds = map[renkei.InstitutionKind]struct{ ja, role, roleDisplay string }{
	renkei.Hospital:      {"病院", "HOSP", "Hospital"},
	renkei.Clinic:        {"診療所", "OF", "Outpatient facility"},
	renkei.CareHome:      {"介護施設", "NCCF", "Nursing or custodial care facility"},
	renkei.Pharmacy:      {"薬局", "OUTPHARM", "outpatient pharmacy"},
	renkei.ImagingCentre: {"画像診断センター", "RADDX", "Radiology diagnostics or therapeutics unit"},
}

// Structures of the resources written here. They are separate from model.go's because the directory needs
// elements the record does not (telecom, address, position, valueInteger) and is never parsed back.

type dirResource struct {
	ResourceType string         `json:"resourceType"`
	ID           string         `json:"id"`
	Meta         *meta          `json:"meta,omitempty"`
	Text         *narrative     `json:"text,omitempty"`
	Extension    []dirExtension `json:"extension,omitempty"`
}

type dirExtension struct {
	URL           string         `json:"url"`
	Extension     []dirExtension `json:"extension,omitempty"`
	ValueString   string         `json:"valueString,omitempty"`
	ValueCode     string         `json:"valueCode,omitempty"`
	ValueCoding   *coding        `json:"valueCoding,omitempty"`
	ValueBoolean  *bool          `json:"valueBoolean,omitempty"`
	ValueInteger  *int           `json:"valueInteger,omitempty"`
	ValueDateTime string         `json:"valueDateTime,omitempty"`
}

type dirContactPoint struct {
	System string `json:"system"`
	Value  string `json:"value"`
	Use    string `json:"use,omitempty"`
}

type dirAddress struct {
	Use     string `json:"use,omitempty"`
	Type    string `json:"type,omitempty"`
	Text    string `json:"text"`
	Country string `json:"country,omitempty"`
}

type dirOrganization struct {
	dirResource
	Identifier []identifier      `json:"identifier,omitempty"`
	Active     bool              `json:"active"`
	Type       []codeableConcept `json:"type"`
	Name       string            `json:"name"`
	Alias      []string          `json:"alias,omitempty"`
	Telecom    []dirContactPoint `json:"telecom,omitempty"`
	Address    []dirAddress      `json:"address,omitempty"`
	Contact    []dirOrgContact   `json:"contact,omitempty"`
}

type dirOrgContact struct {
	Purpose *codeableConcept  `json:"purpose,omitempty"`
	Name    *humanName        `json:"name,omitempty"`
	Telecom []dirContactPoint `json:"telecom,omitempty"`
}

type dirLocation struct {
	dirResource
	Status                 string            `json:"status"`
	Name                   string            `json:"name"`
	Alias                  []string          `json:"alias,omitempty"`
	Mode                   string            `json:"mode"`
	Type                   []codeableConcept `json:"type"`
	Address                *dirAddress       `json:"address,omitempty"`
	PhysicalType           *codeableConcept  `json:"physicalType,omitempty"`
	Position               *dirPosition      `json:"position,omitempty"`
	ManagingOrganization   *reference        `json:"managingOrganization,omitempty"`
	HoursOfOperation       []dirOpening      `json:"hoursOfOperation,omitempty"`
	AvailabilityExceptions string            `json:"availabilityExceptions,omitempty"`
}

type dirPosition struct {
	Longitude number `json:"longitude"`
	Latitude  number `json:"latitude"`
}

type dirOpening struct { // Location.hoursOfOperation
	DaysOfWeek  []string `json:"daysOfWeek,omitempty"`
	AllDay      bool     `json:"allDay,omitempty"`
	OpeningTime string   `json:"openingTime,omitempty"`
	ClosingTime string   `json:"closingTime,omitempty"`
}

type dirAvailable struct { // HealthcareService.availableTime
	DaysOfWeek         []string `json:"daysOfWeek,omitempty"`
	AllDay             bool     `json:"allDay,omitempty"`
	AvailableStartTime string   `json:"availableStartTime,omitempty"`
	AvailableEndTime   string   `json:"availableEndTime,omitempty"`
}

type dirService struct {
	dirResource
	Active                 bool              `json:"active"`
	ProvidedBy             *reference        `json:"providedBy"`
	Category               []codeableConcept `json:"category,omitempty"`
	Type                   []codeableConcept `json:"type"`
	Specialty              []codeableConcept `json:"specialty,omitempty"`
	Location               []reference       `json:"location"`
	Name                   string            `json:"name"`
	Telecom                []dirContactPoint `json:"telecom,omitempty"`
	Characteristic         []codeableConcept `json:"characteristic,omitempty"`
	Program                []codeableConcept `json:"program,omitempty"`
	ReferralMethod         []codeableConcept `json:"referralMethod,omitempty"`
	AvailableTime          []dirAvailable    `json:"availableTime,omitempty"`
	AvailabilityExceptions string            `json:"availabilityExceptions,omitempty"`
}

// DirectoryBundle writes the region's directory as a FHIR R4 Bundle of type collection, shaped as IHE mCSD
// facilities, for other regional systems to read. Type collection, not searchset: the Bundle is a snapshot of
// the whole directory that no search produced (a searchset answers one query, with entry.search and a self link
// naming it). A reader stores the resources as they are, or makes it an mCSD Care Services Update (ITI-130)
// transaction by adding request PUT <type>/<id> to each entry.
//
// Per institution, in institution ID order, it writes (all Organizations first, then the Locations, then the
// HealthcareServices, so that a loader reading in order meets what is referred to first):
//   - Organization (id = Institution.ID; IHE.mCSD.Organization and FacilityOrganization): the 医療機関コード as
//     identifier under SystemInstitutionNo, name (Japanese) and alias (NameEn), type = the mCSD facility code,
//     HL7 organization-type "prov" and the kind under SystemInstitutionKind; telecom = the main phone and the
//     地域連携室's e-mail (the profile's, else Institution.Email); address as text; contact = the 地域連携室.
//   - Location (IHE.mCSD.Location and FacilityLocation, plus LocationDistance when it has a position): status
//     active, type = facility + the HL7 v3 role code of the kind + the kind, physicalType building, address,
//     position (when latitude or longitude is not 0), managingOrganization, and the 診療時間 as hoursOfOperation
//     when they can be read ("月〜金 9:00-12:00/14:00-17:00、土 9:00-12:00、木曜休診" and the like); otherwise,
//     or when they say more than hoursOfOperation can hold (holidays), the text as availabilityExceptions. The
//     HealthcareService repeats them as availableTime.
//   - HealthcareService (IHE.mCSD.HealthcareService): one per institution, not one per department, because
//     everything renkei knows (hours, contact, what it accepts, and above all the live capacity) belongs to the
//     institution; per-department resources would repeat the capacity and let a reader count beds twice. The
//     departments are its type and the specialties its specialty (as text: there is no code system of 診療科
//     in use here), care functions its category, equipment its characteristic, what it accepts its program, the
//     地域連携室's means of contact (renkei itself, phone, fax) its referralMethod, and each capacity item one
//     ExtensionCapacity extension (see capacityExtension) and one line of its narrative.
//
// A capacity item is stale when now − UpdatedAt > staleAfter, the rule of directory.Service.Stale (an item
// without a time is stale; staleAfter ≤ 0 makes every item stale). A stale item is written with stale = true
// and its own time, and its narrative line starts with 【古い情報】: nothing in the Bundle presents it as
// current. The output depends only on the arguments (same input, same bytes): institutions by ID, capacity
// by key, the other lists in the order the institution gave them, fullUrls name-based.
//
// The region operator (kind "region") is left out, as directory search leaves it out: it offers no care.
// The error is of kind Invalid when an institution has no name, its ID is not a FHIR id or is used twice, its
// 医療機関コード is malformed, or its coordinates are not on Earth.
func DirectoryBundle(entries []renkei.DirectoryEntry, now time.Time, staleAfter time.Duration) ([]byte, error) {
	const op = "fhir.DirectoryBundle"
	sorted := slices.Clone(entries)
	slices.SortStableFunc(sorted, func(a, b renkei.DirectoryEntry) int { return cmp.Compare(a.Institution.ID, b.Institution.ID) })
	var orgs, locs, svcs []bundleEntry
	seen := map[string]bool{}
	for _, e := range sorted {
		in := e.Institution
		if in.Kind == renkei.RegionOperator {
			continue
		}
		if err := checkEntry(e, seen); err != nil {
			return nil, &renkei.Error{Op: op, Kind: renkei.Invalid, Message: err.msg, Err: err}
		}
		orgURL, locURL, svcURL := directoryURL("Organization", in.ID), directoryURL("Location", in.ID), directoryURL("HealthcareService", in.ID)
		orgRef := &reference{Reference: orgURL, Type: "Organization", Display: in.Name}
		if in.Code != "" {
			orgRef.Identifier = &identifier{System: SystemInstitutionNo, Value: in.Code}
		}
		locRef := reference{Reference: locURL, Type: "Location", Display: in.Name}
		hours, exact, ok := hoursOf(e.Profile.Hours)
		exceptions := ""
		if !ok || !exact {
			exceptions = strings.TrimSpace(e.Profile.Hours)
		}
		for _, r := range []struct {
			list *[]bundleEntry
			url  string
			res  any
		}{
			{&orgs, orgURL, directoryOrganization(e)},
			{&locs, locURL, directoryLocation(e, orgRef, hours, exceptions)},
			{&svcs, svcURL, directoryService(e, orgRef, locRef, hours, exceptions, now, staleAfter)},
		} {
			raw, err := marshalResource(r.res)
			if err != nil {
				return nil, &renkei.Error{Op: op, Kind: renkei.Internal, Err: err}
			}
			*r.list = append(*r.list, bundleEntry{FullURL: r.url, Resource: raw})
		}
	}
	all := slices.Concat(orgs, locs, svcs)
	return marshal(&bundle{ResourceType: "Bundle", Type: "collection", Timestamp: instantOut(now), Entry: all})
}

// entryError is why an entry cannot be written, in English (Error) and Japanese (msg, for the user).
type entryError struct{ en, msg string }

func (e *entryError) Error() string { return e.en }

func checkEntry(e renkei.DirectoryEntry, seen map[string]bool) *entryError {
	in, p := e.Institution, e.Profile
	switch {
	case !reID.MatchString(in.ID):
		return &entryError{fmt.Sprintf("institution ID %q is not a FHIR id (A–Z, a–z, 0–9, '-', '.', at most 64)", in.ID),
			"医療機関「" + in.Name + "」のID（" + in.ID + "）はFHIRのIDに使えません"}
	case strings.TrimSpace(in.Name) == "":
		return &entryError{fmt.Sprintf("institution %q has no name", in.ID), "医療機関（" + in.ID + "）の名称がありません"}
	case seen[in.ID]:
		return &entryError{fmt.Sprintf("institution ID %q appears twice", in.ID), "医療機関のID（" + in.ID + "）が重複しています"}
	case in.Code != "" && !renkei.ValidInstitutionCode(in.Code):
		return &entryError{fmt.Sprintf("institution %q: %q is not a 医療機関コード", in.ID, in.Code),
			"医療機関「" + in.Name + "」の医療機関コード（" + in.Code + "）が正しくありません"}
	case !onEarth(p.Latitude, p.Longitude):
		return &entryError{fmt.Sprintf("institution %q: latitude %v, longitude %v are not coordinates", in.ID, p.Latitude, p.Longitude),
			"医療機関「" + in.Name + "」の緯度・経度が正しくありません"}
	}
	seen[in.ID] = true
	return nil
}

func onEarth(lat, lon float64) bool {
	return !math.IsNaN(lat) && !math.IsNaN(lon) && math.Abs(lat) <= 90 && math.Abs(lon) <= 180
}

// directoryURL is the entry's fullUrl: a name-based urn:uuid of the resource type and institution ID, the same
// in every export, so that a reader loading one export after another meets the same resources again.
func directoryURL(typ, id string) string { return uuidURL("renkei directory", typ, id) }

func profileMeta(updated time.Time, profiles ...string) *meta {
	return &meta{LastUpdated: instantOut(updated), Profile: profiles}
}

// concept is a CodeableConcept of one word: coded under system when the word is in renkei's list, else text only.
func concept(system, word string, list []string) codeableConcept {
	if slices.Contains(list, word) {
		return codeableConcept{Coding: []coding{{System: system, Code: word, Display: word}}, Text: word}
	}
	return codeableConcept{Text: word}
}

func concepts(system string, words, list []string) []codeableConcept {
	var out []codeableConcept
	var done []string
	for _, w := range words {
		w = strings.TrimSpace(w)
		if w == "" || slices.Contains(done, w) {
			continue
		}
		done = append(done, w)
		out = append(out, concept(system, w, list))
	}
	return out
}

func textConcepts(words []string) []codeableConcept { return concepts("", words, nil) }

func kindConcept(k renkei.InstitutionKind) []codeableConcept {
	if k == "" {
		return nil
	}
	c := coding{System: SystemInstitutionKind, Code: string(k), Display: kinds[k].ja}
	return []codeableConcept{{Coding: []coding{c}, Text: kinds[k].ja}}
}

var facilityType = codeableConcept{Coding: []coding{{System: SystemMCSDTypes, Code: "facility", Display: "Facility"}}}

func phones(p renkei.Profile) []dirContactPoint {
	var out []dirContactPoint
	if v := strings.TrimSpace(p.Phone); v != "" {
		out = append(out, dirContactPoint{System: "phone", Value: v, Use: "work"})
	}
	return out
}

// liaisonEmail is the 地域連携室's address: the one its profile publishes, else the one renkei notifies.
func liaisonEmail(e renkei.DirectoryEntry) string {
	if v := strings.TrimSpace(e.Profile.ContactEmail); v != "" {
		return v
	}
	return strings.TrimSpace(e.Institution.Email)
}

// liaisonTelecom is how to reach the 地域連携室.
func liaisonTelecom(e renkei.DirectoryEntry) []dirContactPoint {
	var out []dirContactPoint
	for _, c := range []dirContactPoint{
		{System: "phone", Value: strings.TrimSpace(e.Profile.ContactPhone), Use: "work"},
		{System: "fax", Value: strings.TrimSpace(e.Profile.ContactFax), Use: "work"},
		{System: "email", Value: liaisonEmail(e), Use: "work"},
	} {
		if c.Value != "" {
			out = append(out, c)
		}
	}
	return out
}

func address(p renkei.Profile) *dirAddress {
	if strings.TrimSpace(p.Address) == "" {
		return nil
	}
	return &dirAddress{Use: "work", Type: "physical", Text: strings.TrimSpace(p.Address), Country: "JP"}
}

func directoryOrganization(e renkei.DirectoryEntry) *dirOrganization {
	in, p := e.Institution, e.Profile
	o := &dirOrganization{
		dirResource: dirResource{ResourceType: "Organization", ID: in.ID, Meta: profileMeta(p.UpdatedAt, ProfileMCSDOrganization, ProfileMCSDFacilityOrganization)},
		Active:      true,
		Type: append([]codeableConcept{facilityType,
			{Coding: []coding{{System: SystemOrganizationType, Code: "prov", Display: "Healthcare Provider"}}}}, kindConcept(in.Kind)...),
		Name:    in.Name,
		Telecom: phones(p),
	}
	if in.Code != "" {
		o.Identifier = []identifier{{System: SystemInstitutionNo, Value: in.Code}}
	}
	if in.NameEn != "" {
		o.Alias = []string{in.NameEn}
	}
	if v := liaisonEmail(e); v != "" {
		o.Telecom = append(o.Telecom, dirContactPoint{System: "email", Value: v, Use: "work"})
	}
	if a := address(p); a != nil {
		o.Address = []dirAddress{*a}
	}
	if t := liaisonTelecom(e); len(t) > 0 || strings.TrimSpace(p.ContactName) != "" {
		c := dirOrgContact{Purpose: &codeableConcept{Text: "地域連携室"}, Telecom: t}
		if v := strings.TrimSpace(p.ContactName); v != "" {
			c.Name = &humanName{Text: v}
		}
		o.Contact = []dirOrgContact{c}
	}
	return o
}

func directoryLocation(e renkei.DirectoryEntry, org *reference, hours []hoursSpan, exceptions string) *dirLocation {
	in, p := e.Institution, e.Profile
	l := &dirLocation{
		dirResource:          dirResource{ResourceType: "Location", ID: in.ID, Meta: profileMeta(p.UpdatedAt, ProfileMCSDLocation, ProfileMCSDFacilityLocation)},
		Status:               "active",
		Name:                 in.Name,
		Mode:                 "instance",
		Type:                 []codeableConcept{facilityType},
		Address:              address(p),
		PhysicalType:         &codeableConcept{Coding: []coding{{System: SystemLocationPhysical, Code: "bu", Display: "Building"}}},
		ManagingOrganization: org,
	}
	if k, ok := kinds[in.Kind]; ok {
		l.Type = append(l.Type, codeableConcept{Coding: []coding{{System: SystemRoleCode, Code: k.role, Display: k.roleDisplay}}})
	}
	l.Type = append(l.Type, kindConcept(in.Kind)...)
	if in.NameEn != "" {
		l.Alias = []string{in.NameEn}
	}
	// Profile: both 0 means unknown; 0 in one of them alone is a place (if not in Japan).
	if p.Latitude != 0 || p.Longitude != 0 {
		l.Position = &dirPosition{Longitude: decimal(p.Longitude), Latitude: decimal(p.Latitude)}
		l.Meta.Profile = append(l.Meta.Profile, ProfileMCSDLocationDistance)
	}
	for _, h := range hours {
		l.HoursOfOperation = append(l.HoursOfOperation, dirOpening{DaysOfWeek: h.days, AllDay: h.allDay, OpeningTime: h.open, ClosingTime: h.close})
	}
	l.AvailabilityExceptions = exceptions
	return l
}

// decimal writes a float as the shortest decimal that reads back as the same float.
func decimal(f float64) number { return number(strconv.FormatFloat(f, 'f', -1, 64)) }

func directoryService(e renkei.DirectoryEntry, org *reference, loc reference, hours []hoursSpan, exceptions string, now time.Time, staleAfter time.Duration) *dirService {
	in, p := e.Institution, e.Profile
	s := &dirService{
		dirResource: dirResource{ResourceType: "HealthcareService", ID: in.ID, Meta: &meta{Profile: []string{ProfileMCSDHealthcareService}}},
		Active:      true,
		ProvidedBy:  org,
		Category:    concepts(SystemCareFunction, in.CareFunctions, renkei.CareFunctions),
		Type:        textConcepts(p.Departments),
		Specialty:   textConcepts(p.Specialties),
		Location:    []reference{loc},
		Name:        in.Name,
		Telecom:     liaisonTelecom(e),
		// renkei.EquipmentKinds holds ICU, HCU, NICU and ヘリポート too: "equipment" is what the building has.
		Characteristic:         concepts(SystemEquipment, p.Equipment, renkei.EquipmentKinds),
		Program:                concepts(SystemReferralAcceptance, p.Accepts, renkei.ReferralAcceptances),
		AvailabilityExceptions: exceptions,
	}
	if len(s.Type) == 0 { // mCSD: type 1..*; an institution without departments offers what its kind does
		s.Type = []codeableConcept{{Text: cmp.Or(kinds[in.Kind].ja, string(in.Kind), in.Name)}}
	}
	if len(p.Accepts) > 0 { // referrals reach it through renkei itself
		s.ReferralMethod = append(s.ReferralMethod, codeableConcept{Coding: []coding{{System: SystemServiceReferralMeth, Code: "elec", Display: "Secure Messaging"}}})
	}
	if strings.TrimSpace(p.ContactPhone) != "" {
		s.ReferralMethod = append(s.ReferralMethod, codeableConcept{Coding: []coding{{System: SystemServiceReferralMeth, Code: "phone", Display: "Phone"}}})
	}
	if strings.TrimSpace(p.ContactFax) != "" {
		s.ReferralMethod = append(s.ReferralMethod, codeableConcept{Coding: []coding{{System: SystemServiceReferralMeth, Code: "fax", Display: "Fax"}}})
	}
	for _, h := range hours {
		s.AvailableTime = append(s.AvailableTime, dirAvailable{DaysOfWeek: h.days, AllDay: h.allDay, AvailableStartTime: h.open, AvailableEndTime: h.close})
	}
	items := slices.Clone(e.Capacity)
	slices.SortStableFunc(items, func(a, b renkei.CapacityItem) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), a.UpdatedAt.Compare(b.UpdatedAt))
	})
	updated := p.UpdatedAt
	var lines []string
	for _, it := range items {
		stale := now.Sub(it.UpdatedAt) > staleAfter // as directory.Service.Stale
		s.Extension = append(s.Extension, capacityExtension(it, stale))
		lines = append(lines, capacityLine(it, stale, now.Location()))
		if it.UpdatedAt.After(updated) {
			updated = it.UpdatedAt
		}
	}
	s.Meta.LastUpdated = instantOut(updated)
	if len(lines) > 0 {
		s.Text = &narrative{Status: "generated", Div: divOf(field{text: in.Name + "　受入状況（" + now.Format("2006-01-02 15:04") + " 現在）\n" + strings.Join(lines, "\n")})}
	}
	return s
}

// capacityExtension writes one capacity item as the complex extension ExtensionCapacity:
//
//	kind       valueCode      emergency | beds | oncall | note (or the item's key when renkei adds another)
//	ward       valueCoding    beds: the ward kind (SystemWardKind when it is one of renkei.WardKinds)
//	emergency  valueCode      emergency: yes | no | partial
//	only       valueString*   emergency partial: the specialties accepted
//	beds       valueInteger   beds: free beds (absent when not reported)
//	onCall     valueString*   oncall: the specialties on call today
//	note       valueString    the note (any kind)
//	updated    valueDateTime  when the item was reported (absent when unknown)
//	stale      valueBoolean   always present: true when the item is older than the region's limit
func capacityExtension(it renkei.CapacityItem, stale bool) dirExtension {
	kind := it.Key
	var sub []dirExtension
	switch {
	case strings.HasPrefix(it.Key, renkei.CapacityBedsPrefix):
		kind = "beds"
		ward := strings.TrimPrefix(it.Key, renkei.CapacityBedsPrefix)
		c := &coding{Display: ward}
		if slices.Contains(renkei.WardKinds, ward) {
			c.System, c.Code = SystemWardKind, ward
		}
		sub = append(sub, dirExtension{URL: "ward", ValueCoding: c})
	case it.Key == "":
		kind = "unknown"
	}
	ext := dirExtension{URL: ExtensionCapacity, Extension: append([]dirExtension{{URL: "kind", ValueCode: kind}}, sub...)}
	add := func(x dirExtension) { ext.Extension = append(ext.Extension, x) }
	if it.Emergency != "" {
		add(dirExtension{URL: "emergency", ValueCode: it.Emergency})
	}
	for _, s := range it.Only {
		add(dirExtension{URL: "only", ValueString: s})
	}
	if it.Beds != nil {
		add(dirExtension{URL: "beds", ValueInteger: it.Beds})
	}
	for _, s := range it.OnCall {
		add(dirExtension{URL: "onCall", ValueString: s})
	}
	if it.Note != "" {
		add(dirExtension{URL: "note", ValueString: it.Note})
	}
	if !it.UpdatedAt.IsZero() {
		add(dirExtension{URL: "updated", ValueDateTime: instantOut(it.UpdatedAt)})
	}
	add(dirExtension{URL: "stale", ValueBoolean: &stale})
	return ext
}

// capacityLine is the item for the narrative, in Japanese, with its time; a stale item starts with 【古い情報】.
func capacityLine(it renkei.CapacityItem, stale bool, loc *time.Location) string {
	var b strings.Builder
	if stale {
		b.WriteString("【古い情報】")
	}
	switch {
	case it.Key == renkei.CapacityEmergency:
		b.WriteString("救急受入: ")
		switch it.Emergency {
		case renkei.EmergencyYes:
			b.WriteString("可")
		case renkei.EmergencyNo:
			b.WriteString("不可")
		case renkei.EmergencyPartial:
			b.WriteString("一部可（" + strings.Join(it.Only, "、") + "）")
		default:
			b.WriteString(it.Emergency)
		}
	case strings.HasPrefix(it.Key, renkei.CapacityBedsPrefix):
		b.WriteString("空床（" + strings.TrimPrefix(it.Key, renkei.CapacityBedsPrefix) + "）: ")
		if it.Beds != nil {
			b.WriteString(strconv.Itoa(*it.Beds) + "床")
		} else {
			b.WriteString("不明")
		}
	case it.Key == renkei.CapacityOnCall:
		b.WriteString("本日のオンコール: " + strings.Join(it.OnCall, "、"))
	case it.Key == renkei.CapacityNote:
		b.WriteString("連絡事項")
	default:
		b.WriteString(it.Key)
	}
	if it.Note != "" {
		b.WriteString("（" + it.Note + "）")
	}
	if it.UpdatedAt.IsZero() {
		b.WriteString("　更新日時不明")
	} else {
		b.WriteString("　" + it.UpdatedAt.In(loc).Format("2006-01-02 15:04") + " 更新")
	}
	return b.String()
}
