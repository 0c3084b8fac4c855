package accounts

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	passwd := "# comment\nroot:x:0:0:root:/root:/bin/sh\n\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash\nbad:x:notanumber:0::/:/bin/sh\nshort:x:1\n"
	wantUsers := []User{{Name: "root", Home: "/root", Shell: "/bin/sh"}, {Name: "ubuntu", UID: 1000, GID: 1000, Home: "/home/ubuntu", Shell: "/bin/bash"}}
	if got := ParsePasswd([]byte(passwd)); !reflect.DeepEqual(got, wantUsers) {
		t.Errorf("ParsePasswd = %+v, want %+v", got, wantUsers)
	}
	group := "root:x:0:\nsudo:x:27:ubuntu,app\nbad:x:x:\n"
	wantGroups := []Group{{Name: "root"}, {Name: "sudo", GID: 27, Members: []string{"ubuntu", "app"}}}
	if got := ParseGroup([]byte(group)); !reflect.DeepEqual(got, wantGroups) {
		t.Errorf("ParseGroup = %+v, want %+v", got, wantGroups)
	}
}
