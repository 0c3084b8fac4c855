package config

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"25G", 25 << 30, false},
		{"25GB", 25 << 30, false},
		{"25Gi", 25 << 30, false},
		{"25GiB", 25 << 30, false},
		{"25g", 25 << 30, false},
		{"512M", 512 << 20, false},
		{"512Mi", 512 << 20, false},
		{"1T", 1 << 40, false},
		{"4K", 4096, false},
		{"1048576", 1 << 20, false},
		{"100B", 100, false},
		{" 2G ", 2 << 30, false},
		{"0", 0, false},
		{"25Q", 0, true},
		{"", 0, true},
		{"G", 0, true},
		{"-1G", 0, true},
		{"1.5G", 0, true},
		{"25 G B", 0, true},
		{"99999999999T", 0, true},
		{"99999999999999999999", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %t", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseSizeMessage(t *testing.T) {
	_, err := ParseSize("25Q")
	if got, want := err.Error(), `"25Q" is not a size (want e.g. 25G, 512M)`; got != want {
		t.Errorf("ParseSize(25Q) error = %q, want %q", got, want)
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{25 << 30, "25G"}, {512 << 20, "512M"}, {1 << 40, "1T"}, {1536 << 20, "1536M"}, {4096, "4K"}, {100, "100"}, {0, "0"},
	}
	for _, tt := range tests {
		if got := FormatSize(tt.in); got != tt.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tt.in, got, tt.want)
		}
		if n, err := ParseSize(FormatSize(tt.in)); err != nil || n != tt.in {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", tt.in, n, err)
		}
	}
}
