package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pquerna/otp/totp"

	"renkei"
	"renkei/archive"
	"renkei/clinical"
	"renkei/directory"
	"renkei/identity"
	"renkei/internal/dicomtest"
	"renkei/sqlstore"
)

// The demo region: a hospital, a clinic that refers to it, a care home, and the region's operator, with a user of
// every role. Demo logins start with identity.DemoPrefix, so they are refused by a server not started with --demo.
var demoInstitutions = []renkei.Institution{
	{ID: "region", Name: "みなと地域医療連携ネットワーク事務局", NameEn: "Minato Regional Network Office", Kind: renkei.RegionOperator, Issuer: "REGION"},
	{ID: "chuo-hospital", Name: "みなと中央病院", NameEn: "Minato Central Hospital", Kind: renkei.Hospital, Code: "1311234567",
		CareFunctions: []string{"高度急性期", "急性期"}, Issuer: "CHUO"},
	{ID: "kita-clinic", Name: "北町クリニック", NameEn: "Kitamachi Clinic", Kind: renkei.Clinic, Code: "1317654321",
		CareFunctions: []string{"在宅"}, Issuer: "KITA"},
	{ID: "sakura-care", Name: "さくら介護ホーム", NameEn: "Sakura Care Home", Kind: renkei.CareHome, CareFunctions: []string{"介護"}, Issuer: "SAKURA"},
	{ID: "minami-rehab", Name: "南みなとリハビリテーション病院", NameEn: "Minami-Minato Rehabilitation Hospital", Kind: renkei.Hospital,
		Code: "1312223334", CareFunctions: []string{"回復期", "慢性期"}, Issuer: "MINAMI"},
}

var demoUsers = []struct {
	login, name, institution string
	role                     renkei.Role
}{
	{"demo-tanaka@chuo-hospital", "田中 一郎", "chuo-hospital", renkei.Physician},
	{"demo-suzuki@chuo-hospital", "鈴木 花子", "chuo-hospital", renkei.Radiologist},
	{"demo-sato@chuo-hospital", "佐藤 美咲", "chuo-hospital", renkei.Nurse},
	{"demo-ito@chuo-hospital", "伊藤 健", "chuo-hospital", renkei.Clerk},
	{"demo-admin@chuo-hospital", "中央病院 管理者", "chuo-hospital", renkei.InstitutionAdmin},
	{"demo-kato@kita-clinic", "加藤 正", "kita-clinic", renkei.Physician},
	{"demo-admin@kita-clinic", "北町クリニック 管理者", "kita-clinic", renkei.InstitutionAdmin},
	{"demo-nakamura@sakura-care", "中村 由美", "sakura-care", renkei.Nurse},
	{"demo-admin@region", "地域 管理者", "region", renkei.RegionAdmin},
	{"demo-yamada", "山田 太郎", "kita-clinic", renkei.PatientRole}, // the patient D0001 (H0001 at the hospital)
}

// demoAccountsFile keeps the demo users' passwords and authenticator keys in the data folder (mode 0600), so that
// every --demo start can print them again.
const demoAccountsFile = "demo-accounts.txt"

// seedDemo creates the demo region once (institutions, users with printed passwords and authenticator keys, a
// share from the clinic to the hospital) and stores a few small CT studies with Japanese and Latin patient names:
// two of the clinic's patients, one of the hospital's. Running it again changes nothing.
func seedDemo(ctx context.Context, db *sqlstore.DB, ids *identity.Service, arch *archive.Service, data string, out io.Writer) error {
	by := &renkei.Principal{Kind: renkei.SystemPrincipal, Name: "demo set-up", Write: true}
	pk := map[string]int64{}
	for _, in := range demoInstitutions {
		existing, err := db.Institution(ctx, in.ID)
		if err == nil {
			pk[in.ID] = existing.PK
			continue
		}
		if err := db.PutInstitution(ctx, &in, nil); err != nil {
			return err
		}
		pk[in.ID] = in.PK
	}
	accounts := filepath.Join(data, demoAccountsFile)
	if _, err := os.Stat(accounts); os.IsNotExist(err) {
		var b strings.Builder
		fmt.Fprintln(&b, "# renkei demo accounts (refused by a server started without --demo)")
		fmt.Fprintln(&b, "# login\tpassword\tauthenticator key (add it to an app, or: renkei admin user totp-code LOGIN --data DIR)")
		for _, u := range demoUsers {
			in, err := db.Institution(ctx, u.institution)
			if err != nil {
				return err
			}
			pw := "demo-" + identity.OneTimePassword()
			secret := randomBase32()
			user := renkei.User{Login: u.login, Name: u.name, Institution: in, Role: u.role}
			if u.role == renkei.PatientRole {
				if err := seedDemoStudies(ctx, arch, data, pk); err != nil {
					return err
				}
				lp, err := db.LocalPatient(ctx, pk["kita-clinic"], renkei.PatientKey{Issuer: "KITA", ID: "D0001"})
				if err != nil {
					return err
				}
				user.PatientPK = lp.PK
			}
			if err := ids.CreateUserWithPassword(ctx, by, &user, pw); err != nil {
				if renkei.ErrorKind(err) == renkei.Conflict {
					continue
				}
				return err
			}
			f := false
			if err := db.UpdateUser(ctx, user.PK, renkei.UserUpdate{TOTPSecret: &secret, MustChange: &f}, nil); err != nil {
				return err
			}
			fmt.Fprintf(&b, "%s\t%s\t%s\n", u.login, pw, secret)
		}
		if err := os.WriteFile(accounts, []byte(b.String()), 0o600); err != nil {
			return err
		}
	}
	if err := seedDemoStudies(ctx, arch, data, pk); err != nil {
		return err
	}
	shares, err := db.Shares(ctx, renkei.ShareFilter{FromInstitution: pk["kita-clinic"]})
	if err != nil {
		return err
	}
	if len(shares) == 0 {
		// Yamada Taro consented at both institutions (on the region's electronic form), is one regional patient
		// (D0001 at the clinic, H0001 at the hospital), and the clinic referred him with his CT.
		for _, c := range []struct {
			inst, issuer, id string
		}{{"kita-clinic", "KITA", "D0001"}, {"chuo-hospital", "CHUO", "H0001"}} {
			e := renkei.EventFor(by, renkei.ActionAdmin, renkei.OutcomeSuccess)
			e.DataInstitution, e.Patient, e.Detail = pk[c.inst], renkei.PatientKey{Issuer: c.issuer, ID: c.id}, "recorded consent (demo)"
			if err := db.AddConsent(ctx, &renkei.Consent{Institution: pk[c.inst], Patient: e.Patient, Scope: renkei.ConsentScopeRegion,
				GivenAt: time.Now(), Method: "electronic", Note: "demo", RecordedBy: by.Name}, &e); err != nil {
				return err
			}
		}
		a, err := db.LocalPatient(ctx, pk["kita-clinic"], renkei.PatientKey{Issuer: "KITA", ID: "D0001"})
		if err != nil {
			return err
		}
		b, err := db.LocalPatient(ctx, pk["chuo-hospital"], renkei.PatientKey{Issuer: "CHUO", ID: "H0001"})
		if err != nil {
			return err
		}
		le := renkei.EventFor(by, renkei.ActionAdmin, renkei.OutcomeSuccess)
		if _, err := db.Link(ctx, a.PK, b.PK, by.Name, &le); err != nil {
			return err
		}
		if err := seedDemoReferrals(ctx, db, pk); err != nil {
			return err
		}
		if err := seedDemoDirectory(ctx, db, pk); err != nil {
			return err
		}
	}
	b, err := os.ReadFile(accounts)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "demo region: 北町クリニック (kita-clinic) refers 山田太郎 (D0001; H0001 at the hospital) to みなと中央病院 (chuo-hospital) and asks its radiologist to read 髙橋花子's CT.\n%s", b)
	return nil
}

func randomBase32() string {
	b := make([]byte, 20)
	rand.Read(b)
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
}

// demoTOTPCode prints the current authenticator code of a demo account (not of any other).
func demoTOTPCode(secret string) (string, error) {
	return totp.GenerateCode(secret, time.Now())
}

func seedDemoStudies(ctx context.Context, arch *archive.Service, data string, pk map[string]int64) error {
	dir, err := os.MkdirTemp(data, "demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	patients := []struct{ id, name, institution, birth, sex string }{
		{"D0001", "Yamada^Taro=山田^太郎=ヤマダ^タロウ", "kita-clinic", "19450312", "M"},
		{"D0002", "Takahashi^Hanako=髙橋^花子=タカハシ^ハナコ", "kita-clinic", "19520807", "F"},
		{"D0003", "Buc^Jerome", "chuo-hospital", "19700101", "M"},
		{"H0001", "Yamada^Taro=山田^太郎=やまだ^たろう", "chuo-hospital", "19450312", "M"},
		{"D0004", "Suzuki^Ichiro=鈴木^一郎=スズキ^イチロウ", "kita-clinic", "19600415", "M"}, // never shared
	}
	for i, p := range patients {
		ctx := renkei.WithPrincipal(ctx, &renkei.Principal{Kind: renkei.AEPrincipal, Name: "DEMO", Institution: pk[p.institution], Write: true})
		for j := 1; j <= 3; j++ {
			path := filepath.Join(dir, fmt.Sprintf("%d-%d.dcm", i, j))
			err := dicomtest.CT(path, dicomtest.CTOptions{
				StudyInstanceUID:  dicomtest.UID(fmt.Sprintf("demo-study-%d", i)),
				SeriesInstanceUID: dicomtest.UID(fmt.Sprintf("demo-series-%d", i)),
				SOPInstanceUID:    dicomtest.UID(fmt.Sprintf("demo-instance-%d-%d", i, j)),
				PatientID:         p.id, PatientName: p.name, AccessionNumber: fmt.Sprintf("DEMO%04d", i+1),
				PatientBirthDate: p.birth, PatientSex: p.sex,
				Rows: 256, Cols: 256, InstanceNumber: j, Seed: int64(i*10 + j),
			})
			if err != nil {
				return err
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			res := arch.Store(ctx, f, archive.StoreRequest{Source: "demo", Issuer: demoIssuer(p.institution)})
			f.Close()
			if res.Err != nil {
				return res.Err
			}
		}
	}
	return nil
}

func demoIssuer(id string) string {
	for _, in := range demoInstitutions {
		if in.ID == id {
			return in.Issuer
		}
	}
	return ""
}

// seedDemoReferrals gives the demo region its daily work: 山田太郎's record at the clinic (two allergies, two
// medications, a diagnosis), a referral with his CT sent to the hospital and waiting there, and a reading request for
// 髙橋花子's CT in the radiologist's worklist.
func seedDemoReferrals(ctx context.Context, db *sqlstore.DB, pk map[string]int64) error {
	as := func(login string) (context.Context, error) {
		u, _, err := db.UserByLogin(ctx, login)
		if err != nil {
			return nil, err
		}
		return renkei.WithPrincipal(ctx, &renkei.Principal{Kind: renkei.UserPrincipal, ID: u.PK, Name: u.Login, Institution: u.Institution.PK,
			Role: u.Role, Write: true, Issuer: u.Institution.Issuer, Session: "demo"}), nil
	}
	kato, err := as(identity.DemoPrefix + "kato@kita-clinic")
	if err != nil {
		return err
	}
	e := renkei.EventFor(renkei.PrincipalFrom(kato), renkei.ActionAdmin, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Detail = pk["kita-clinic"], renkei.PatientKey{Issuer: "KITA", ID: "D0002"}, "recorded consent (demo)"
	if err := db.AddConsent(ctx, &renkei.Consent{Institution: pk["kita-clinic"], Patient: e.Patient, Scope: renkei.ConsentScopeRegion,
		GivenAt: time.Now(), Method: "electronic", Note: "demo", RecordedBy: "demo set-up"}, &e); err != nil {
		return err
	}
	cs := clinical.New(db)
	yamada, err := db.LocalPatient(ctx, pk["kita-clinic"], renkei.PatientKey{Issuer: "KITA", ID: "D0001"})
	if err != nil {
		return err
	}
	rec := renkei.Record{
		Allergies: []renkei.Allergy{{Category: renkei.AllergyDrug, Substance: "ペニシリン系抗菌薬", Reaction: "蕁麻疹", Severity: "moderate"},
			{Category: renkei.AllergyFood, Substance: "そば", Reaction: "アナフィラキシー", Severity: "severe"}},
		Medications: []renkei.Medication{{Drug: "アムロジピン錠5mg", Dose: "1錠", Route: "内服", Frequency: "1日1回朝食後"},
			{Drug: "メトホルミン塩酸塩錠250mg", Dose: "2錠", Route: "内服", Frequency: "1日2回朝夕食後"}},
		Conditions: []renkei.Condition{{Name: "高血圧症"}, {Name: "2型糖尿病"}},
	}
	if err := cs.AddFacts(kato, yamada.PK, &rec); err != nil {
		return err
	}
	ref, err := cs.Create(kato, clinical.NewReferral{Patient: yamada.Key, ToInstitution: pk["chuo-hospital"], ToDepartment: "呼吸器内科",
		Studies: []string{dicomtest.UID("demo-study-0")}, Letter: renkei.Letter{Purpose: "胸部CTで右上葉に結節を認めました。精査加療をお願いいたします。",
			Diagnosis: "右肺上葉結節(肺癌の疑い)", ChiefComplaint: "2か月続く咳嗽", History: "高血圧症、2型糖尿病。喫煙 40本×30年(10年前に禁煙)",
			Course: "健診の胸部X線で異常を指摘され、当院でCTを施行しました。", Medications: "アムロジピン錠5mg 1錠 1日1回朝食後\nメトホルミン塩酸塩錠250mg 2錠 1日2回朝夕食後",
			Allergies: "ペニシリン系抗菌薬(蕁麻疹)、そば(アナフィラキシー)", Author: "加藤 正", Department: "内科"}})
	if err != nil {
		return err
	}
	if _, err := cs.Act(kato, ref.ID, clinical.Step{Action: "send"}); err != nil {
		return err
	}
	takahashi, err := db.LocalPatient(ctx, pk["kita-clinic"], renkei.PatientKey{Issuer: "KITA", ID: "D0002"})
	if err != nil {
		return err
	}
	read, err := cs.Create(kato, clinical.NewReferral{Kind: renkei.KindReading, Priority: "urgent", Patient: takahashi.Key,
		ToInstitution: pk["chuo-hospital"], Studies: []string{dicomtest.UID("demo-study-1")},
		Letter: renkei.Letter{Purpose: "胸部CTの読影をお願いします。", ChiefComplaint: "労作時の息切れ", Author: "加藤 正"}})
	if err != nil {
		return err
	}
	_, err = cs.Act(kato, read.ID, clinical.Step{Action: "send"})
	return err
}

// seedDemoDirectory fills the directory: each demo institution's profile (around Minato, Tokyo) and its capacity now.
func seedDemoDirectory(ctx context.Context, db *sqlstore.DB, pk map[string]int64) error {
	ds := directory.New(db)
	admin := renkei.WithPrincipal(ctx, &renkei.Principal{Kind: renkei.UserPrincipal, Name: "demo set-up", Role: renkei.RegionAdmin})
	beds := func(n int) *int { return &n }
	for id, e := range map[string]struct {
		p   renkei.Profile
		cap []renkei.CapacityItem
	}{
		"chuo-hospital": {renkei.Profile{Departments: []string{"内科", "呼吸器内科", "脳神経外科", "循環器内科", "救急科"}, Specialties: []string{"脳卒中", "心臓血管外科", "肺癌"},
			Equipment: []string{"CT", "MRI", "血管造影", "ICU", "ヘリポート"}, Address: "東京都港区芝公園1-1", Latitude: 35.6586, Longitude: 139.7454,
			Hours: "平日 8:30–17:00(救急は24時間)", Phone: "03-0000-1111", ContactName: "地域医療連携室", ContactPhone: "03-0000-1112", ContactFax: "03-0000-1113",
			Accepts: []string{"紹介", "救急", "読影依頼"}},
			[]renkei.CapacityItem{{Key: renkei.CapacityEmergency, Emergency: renkei.EmergencyYes}, {Key: renkei.CapacityBedsPrefix + "一般", Beds: beds(6)},
				{Key: renkei.CapacityBedsPrefix + "ICU", Beds: beds(1)}, {Key: renkei.CapacityOnCall, OnCall: []string{"脳卒中", "循環器内科"}}}},
		"kita-clinic": {renkei.Profile{Departments: []string{"内科"}, Specialties: []string{"在宅医療"}, Equipment: []string{"内視鏡"}, Address: "東京都港区北町2-3",
			Latitude: 35.6655, Longitude: 139.7310, Hours: "平日 9:00–18:00", Phone: "03-0000-2222", Accepts: []string{"在宅移行", "紹介"}}, nil},
		"minami-rehab": {renkei.Profile{Departments: []string{"リハビリテーション科", "整形外科"}, Specialties: []string{"脳卒中リハビリ"}, Equipment: []string{"CT"},
			Address: "東京都港区南3-4", Latitude: 35.6420, Longitude: 139.7480, Phone: "03-0000-3333", Accepts: []string{"転院", "紹介"}},
			[]renkei.CapacityItem{{Key: renkei.CapacityEmergency, Emergency: renkei.EmergencyNo}, {Key: renkei.CapacityBedsPrefix + "回復期リハビリテーション", Beds: beds(3)}}},
		"sakura-care": {renkei.Profile{Address: "東京都港区桜4-5", Latitude: 35.6700, Longitude: 139.7600, Phone: "03-0000-4444", Accepts: []string{"介護施設入所", "レスパイト"}},
			[]renkei.CapacityItem{{Key: renkei.CapacityBedsPrefix + "介護", Beds: beds(2)}}},
	} {
		if err := ds.SaveProfile(admin, pk[id], e.p); err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		if len(e.cap) > 0 {
			if err := ds.ReportCapacity(admin, pk[id], e.cap); err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
		}
	}
	return nil
}
