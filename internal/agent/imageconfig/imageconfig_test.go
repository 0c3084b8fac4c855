package imageconfig

import (
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, c := range []Config{
		{},
		{Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}, WorkingDir: "/app", User: "node:node"},
	} {
		got, err := Parse(c.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("Parse(Marshal(%+v)) = %+v", c, got)
		}
	}
	if _, err := Parse([]byte("{")); err == nil {
		t.Error("Parse of a broken file: no error")
	}
}
