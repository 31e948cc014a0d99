package letterpdf_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei/letterpdf"
)

func TestWareki(t *testing.T) {
	tests := []struct {
		name    string
		y, m, d int
		want    string
	}{
		{"before Meiji", 1868, 10, 22, "1868年10月22日"},
		{"Meiji 1", 1868, 10, 23, "明治元年10月23日"},
		{"Meiji 2", 1869, 1, 1, "明治2年1月1日"},
		{"last day of Meiji", 1912, 7, 29, "明治45年7月29日"},
		{"Taisho 1", 1912, 7, 30, "大正元年7月30日"},
		{"last day of Taisho", 1926, 12, 24, "大正15年12月24日"},
		{"Showa 1", 1926, 12, 25, "昭和元年12月25日"},
		{"Showa 2", 1927, 1, 1, "昭和2年1月1日"},
		{"Showa 25", 1950, 3, 1, "昭和25年3月1日"},
		{"last day of Showa", 1989, 1, 7, "昭和64年1月7日"},
		{"Heisei 1", 1989, 1, 8, "平成元年1月8日"},
		{"last day of Heisei", 2019, 4, 30, "平成31年4月30日"},
		{"Reiwa 1", 2019, 5, 1, "令和元年5月1日"},
		{"Reiwa 2", 2020, 1, 1, "令和2年1月1日"},
		{"Reiwa 8", 2026, 11, 27, "令和8年11月27日"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, letterpdf.Wareki(tt.y, tt.m, tt.d)); diff != "" {
				t.Errorf("Wareki(%d, %d, %d) (-want +got):\n%s", tt.y, tt.m, tt.d, diff)
			}
		})
	}
}
