package charset

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Fold returns the search key of a text, so that spellings of one name that differ only in width, script of
// kana, case, kanji variant, spacing or long-vowel marks meet: "ヤマダ タロウ", "ﾔﾏﾀﾞﾀﾛｳ" and "やまだ　たろう" all fold
// to "ヤマダタロウ", "髙﨑" and "高崎" to "高崎", "yamada" to "YAMADA".
//
// The steps: NFKC (full-width ASCII → ASCII, half-width katakana → full-width, compatibility ideographs → unified);
// hiragana U+3041–U+3096, ゝ and ゞ → the katakana 0x60 above them; letters upper-cased (unicode.ToUpper, so Greek
// and Cyrillic too); white space (ASCII and U+3000), the long-vowel mark ー, the middle dot ・ and the dashes
// U+2010–U+2015 and U+2212 that get typed for ー, and variation selectors (IVS) removed; the kanji of variantKanji
// replaced by their common form. Everything else is kept, the DICOM wildcards '*' and '?', the PN delimiters '^'
// and '=', '\' and '-' included, so a folded query keeps its wildcards and a folded name its structure (full-width
// ＊ and ？ become '*' and '?'). Fold(Fold(s)) == Fold(s); each run of invalid UTF-8 becomes one U+FFFD.
//
// Names in ASCII, kana and kanji, the usual case, take a path without NFKC that gives the same result; Fold does
// not allocate when s is ASCII and already folded.
func Fold(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			if k, ok := foldJapanese(s); ok {
				return k
			}
			return foldUnicode(s)
		}
	}
	return foldASCII(s)
}

// foldJapanese folds s as foldUnicode does, without NFKC, if s holds only ASCII, kana (full- or half-width),
// CJK unified ideographs, full-width ASCII and U+3000, where NFKC is a per-rune mapping; ok is false otherwise.
func foldJapanese(s string) (k string, ok bool) {
	var b strings.Builder
	b.Grow(len(s)) // no mapping below makes a rune longer in UTF-8
	for i := 0; i < len(s); {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		i += size
		switch {
		case r < utf8.RuneSelf:
		case r >= 'ぁ' && r <= 'ゖ', r == 'ゝ', r == 'ゞ':
			r += 'ァ' - 'ぁ'
		case r >= 'ァ' && r <= 'ヺ', r == 'ヽ', r == 'ヾ':
		case r == 'ー', r == '・', r == '\u3000':
			continue
		case r >= 0x3400 && r <= 0x4dbf, r >= 0x4e00 && r <= 0x9fff, r >= 0x20000 && r <= 0x2f7ff,
			r >= 0x30000 && r <= 0x3ffff, r >= 0xfa0e && r <= 0xfa29 && unifiedInCompat>>(r-0xfa0e)&1 != 0:
			// CJK Unified Ideographs and their extensions, which NFKC leaves alone (unlike the compatibility
			// ideographs at U+F900 and U+2F800 other than the twelve unified ones, 﨑 U+FA11 among them).
			if j, ok := slices.BinarySearchFunc(variantKanji[:], r, func(p [2]rune, r rune) int { return int(p[0] - r) }); ok {
				r = variantKanji[j][1]
			}
		case r >= '！' && r <= '～':
			r -= '！' - '!'
		case r >= '｡' && r <= 'ﾝ':
			r = halfwidthKana[r-'｡']
			if i+3 <= len(s) && s[i] == 0xef && s[i+1] == 0xbe && (s[i+2] == 0x9e || s[i+2] == 0x9f) {
				// ﾞ U+FF9E or ﾟ U+FF9F: NFKC composes them with the kana before.
				if r < 'ァ' || r > 'ヺ' {
					return "", false
				}
				if r = kanaVoiced[r-'ァ'][s[i+2]-0x9e]; r == 0 {
					return "", false
				}
				i += 3
			}
			if r == 'ー' || r == '・' {
				continue
			}
		default:
			return "", false // also ﾞ and ﾟ on their own, and the combining marks U+3099 and U+309A
		}
		if r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		} else if r < utf8.RuneSelf && asciiSpace(byte(r)) {
			continue
		}
		b.WriteRune(r)
	}
	return b.String(), true
}

// unifiedInCompat has bit r-0xFA0E set for the twelve unified ideographs in the CJK Compatibility Ideographs block
// (U+FA0E, FA0F, FA11, FA13, FA14, FA1F, FA21, FA23, FA24, FA27, FA28, FA29), which have no decomposition.
const unifiedInCompat = 1<<0x00 | 1<<0x01 | 1<<0x03 | 1<<0x05 | 1<<0x06 | 1<<0x11 | 1<<0x13 | 1<<0x15 | 1<<0x16 |
	1<<0x19 | 1<<0x1a | 1<<0x1b

// halfwidthKana is NFKC of U+FF61–U+FF9D (｡ to ﾝ); kanaVoiced is NFC of each katakana ァ–ヺ followed by U+3099 and
// by U+309A, 0 where they do not compose. Both are computed from x/text's tables when the package is loaded.
var halfwidthKana, kanaVoiced = kanaTables()

func kanaTables() (half *['ﾝ' - '｡' + 1]rune, voiced *['ヺ' - 'ァ' + 1][2]rune) {
	half = new(['ﾝ' - '｡' + 1]rune)
	for r := '｡'; r <= 'ﾝ'; r++ {
		k, _ := utf8.DecodeRuneInString(norm.NFKC.String(string(r)))
		half[r-'｡'] = k
	}
	voiced = new(['ヺ' - 'ァ' + 1][2]rune)
	for r := 'ァ'; r <= 'ヺ'; r++ {
		for m, mark := range []rune{'\u3099', '\u309a'} {
			if c := []rune(norm.NFC.String(string([]rune{r, mark}))); len(c) == 1 {
				voiced[r-'ァ'][m] = c[0]
			}
		}
	}
	return half, voiced
}

func foldASCII(s string) string {
	i := 0
	for ; i < len(s); i++ {
		if c := s[i]; c >= 'a' && c <= 'z' || asciiSpace(c) {
			break
		}
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, i, len(s))
	copy(b, s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		case asciiSpace(c):
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func asciiSpace(c byte) bool {
	return c == ' ' || c >= '\t' && c <= '\r'
}

func foldUnicode(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD") // before NFKC, which passes invalid bytes through unnormalised
	}
	// Removing a rune can bring a base and a combining mark together ("C¸" is C, SPACE, U+0327 after NFKC), so
	// the result is normalised again until it is stable (a second pass is rare; three is the bound).
	for range 3 {
		var changed bool
		s, changed = foldOnce(s)
		if !changed || norm.NFKC.IsNormalString(s) {
			break
		}
	}
	return s
}

// foldOnce is one pass of Fold; changed reports whether it removed or replaced a rune other than by upper-casing
// ASCII.
func foldOnce(s string) (out string, changed bool) {
	s = norm.NFKC.String(s)
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			if r >= 'a' && r <= 'z' {
				r -= 'a' - 'A'
			} else if asciiSpace(byte(r)) {
				changed = true
				continue
			}
		case r >= 'ぁ' && r <= 'ゖ', r == 'ゝ', r == 'ゞ':
			r += 'ァ' - 'ぁ'
		case r == 'ー', r == '・', r >= '\u2010' && r <= '\u2015', r == '\u2212',
			r >= '\uFE00' && r <= '\uFE0F', r >= '\U000E0100' && r <= '\U000E01EF':
			changed = true
			continue
		case r >= 0x3400:
			if i, ok := slices.BinarySearchFunc(variantKanji[:], r, func(p [2]rune, r rune) int { return int(p[0] - r) }); ok {
				r = variantKanji[i][1]
				changed = true
			}
		case unicode.IsSpace(r):
			changed = true
			continue
		default:
			if u := unicode.ToUpper(r); u != r {
				r = u
				changed = true
			}
		}
		b.WriteRune(r)
	}
	return b.String(), changed
}

// variantKanji maps kanji to the form a search should treat them as, sorted by the first rune. It holds
//   - the 旧字体 (康熙字典体) that the 常用漢字表 (平成22年内閣告示第2号) gives in parentheses next to its 新字体, those
//     that occur in names (國→国, 澤→沢, 廣→広, 櫻→桜, 邊→辺, 齋→斎, 德→徳, 眞→真, 髮→髪, 瀧→滝, 龍→竜…);
//   - the 異体字 most often met in family names, which IPA's 縮退マップ (文字情報基盤, 2015) folds into JIS X 0213:
//     髙→高, 﨑/嵜→崎, 邉→辺, 嶋/嶌→島, 濵→浜, 峯→峰, 冨→富, 栁→柳, 舘→館, 曻→昇, 槇→槙, 萠→萌, 鷗→鴎, 𠮷→吉;
//   - 斉 and its 旧字体 齊 folded into 斎 with 齋, so that the four spellings of さいとう meet.
//
// It is a hand-kept subset, not generated from either source. Compatibility ideographs with a canonical
// decomposition (U+F900–U+FAFF except the twelve unified ones such as 﨑 U+FA11) are handled by NFKC already.
var variantKanji = [...][2]rune{
	{'乘', '乗'}, {'亂', '乱'}, {'亞', '亜'}, {'佛', '仏'}, {'來', '来'}, {'傳', '伝'}, {'儉', '倹'}, {'兒', '児'},
	{'兩', '両'}, {'冨', '富'}, {'劍', '剣'}, {'勞', '労'}, {'勳', '勲'}, {'勵', '励'}, {'參', '参'}, {'單', '単'},
	{'嚴', '厳'}, {'國', '国'}, {'圓', '円'}, {'圖', '図'}, {'團', '団'}, {'壯', '壮'}, {'壽', '寿'}, {'奧', '奥'},
	{'奬', '奨'}, {'孃', '嬢'}, {'學', '学'}, {'實', '実'}, {'寬', '寛'}, {'寶', '宝'}, {'將', '将'}, {'專', '専'},
	{'對', '対'}, {'屆', '届'}, {'峯', '峰'}, {'峽', '峡'}, {'嵜', '崎'}, {'嶋', '島'}, {'嶌', '島'}, {'帶', '帯'},
	{'廢', '廃'}, {'廣', '広'}, {'廳', '庁'}, {'彈', '弾'}, {'彌', '弥'}, {'從', '従'}, {'德', '徳'}, {'恆', '恒'},
	{'惠', '恵'}, {'惱', '悩'}, {'愼', '慎'}, {'應', '応'}, {'戀', '恋'}, {'戰', '戦'}, {'拂', '払'}, {'拔', '抜'},
	{'拜', '拝'}, {'搖', '揺'}, {'擔', '担'}, {'敍', '叙'}, {'數', '数'}, {'斉', '斎'}, {'斷', '断'}, {'晝', '昼'},
	{'曉', '暁'}, {'曻', '昇'}, {'會', '会'}, {'栁', '柳'}, {'條', '条'}, {'榮', '栄'}, {'槇', '槙'}, {'樂', '楽'},
	{'樓', '楼'}, {'樣', '様'}, {'檢', '検'}, {'櫻', '桜'}, {'權', '権'}, {'氣', '気'}, {'淨', '浄'}, {'淺', '浅'},
	{'溪', '渓'}, {'滿', '満'}, {'澁', '渋'}, {'澤', '沢'}, {'濟', '済'}, {'濱', '浜'}, {'濵', '浜'}, {'瀧', '滝'},
	{'瀨', '瀬'}, {'灣', '湾'}, {'燈', '灯'}, {'燒', '焼'}, {'爐', '炉'}, {'爭', '争'}, {'狀', '状'}, {'獨', '独'},
	{'瓣', '弁'}, {'當', '当'}, {'疊', '畳'}, {'發', '発'}, {'眞', '真'}, {'祕', '秘'}, {'祿', '禄'}, {'禪', '禅'},
	{'禮', '礼'}, {'穗', '穂'}, {'竝', '並'}, {'粹', '粋'}, {'經', '経'}, {'綠', '緑'}, {'縣', '県'}, {'總', '総'},
	{'繩', '縄'}, {'繪', '絵'}, {'續', '続'}, {'聰', '聡'}, {'聲', '声'}, {'聽', '聴'}, {'腦', '脳'}, {'臺', '台'},
	{'與', '与'}, {'舖', '舗'}, {'舘', '館'}, {'莊', '荘'}, {'萠', '萌'}, {'萬', '万'}, {'藏', '蔵'}, {'藝', '芸'},
	{'藥', '薬'}, {'處', '処'}, {'螢', '蛍'}, {'蟲', '虫'}, {'衞', '衛'}, {'覺', '覚'}, {'覽', '覧'}, {'觀', '観'},
	{'謠', '謡'}, {'譯', '訳'}, {'譽', '誉'}, {'讀', '読'}, {'變', '変'}, {'讓', '譲'}, {'豐', '豊'}, {'豫', '予'},
	{'賣', '売'}, {'賴', '頼'}, {'轉', '転'}, {'辨', '弁'}, {'辯', '弁'}, {'遲', '遅'}, {'邉', '辺'}, {'邊', '辺'},
	{'郞', '郎'}, {'醉', '酔'}, {'錄', '録'}, {'錢', '銭'}, {'鎭', '鎮'}, {'鐵', '鉄'}, {'鑄', '鋳'}, {'關', '関'},
	{'險', '険'}, {'靈', '霊'}, {'靜', '静'}, {'顯', '顕'}, {'餘', '余'}, {'驛', '駅'}, {'髙', '高'}, {'髮', '髪'},
	{'鷗', '鴎'}, {'麥', '麦'}, {'黃', '黄'}, {'黑', '黒'}, {'點', '点'}, {'黨', '党'}, {'齊', '斎'}, {'齋', '斎'},
	{'齡', '齢'}, {'龍', '竜'}, {'龜', '亀'}, {'﨑', '崎'}, {'𠮷', '吉'},
}
