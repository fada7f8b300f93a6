{{/* The dev MariaDB's one configuration file (devDependencies), read by
mariadb-install-db, mariadbd and the client the probes run: everything it
writes is under /data and /tmp (emptyDir volumes), the root filesystem stays
read-only. */}}
{{- define "ordermesh.mariadbConfig" -}}
[client-server]
socket = /tmp/mariadb.sock
port = {{ .Values.dependencies.ports.database }}

[client]
# uid 10001 is `mysql` in the image: unix_socket authentication over the socket,
# no password (mariadb-install-db --auth-root-socket-user=mysql).
user = mysql

[mariadbd]
datadir = /data
tmpdir = /tmp
pid-file = /tmp/mariadb.pid
bind-address = 0.0.0.0
skip-name-resolve
skip-log-bin
character-set-server = utf8mb4
collation-server = utf8mb4_unicode_ci
max-connections = 300
# Small: a development server next to the mesh.
innodb-buffer-pool-size = 64M
innodb-log-file-size = 16M
performance-schema = OFF
# io_uring and native AIO are refused by many seccomp RuntimeDefault profiles.
innodb-use-native-aio = 0
{{- end -}}

{{/* SQL that mariadbd runs at every start (--init-file): each database and
account that dependencies.databases names (mysql* URLs only), created when
missing, the password set to the URL's. */}}
{{- define "ordermesh.mariadbInitSql" -}}
{{- $databases := .Values.dependencies.databases -}}
{{- $urls := concat (list $databases.catalog $databases.payment $databases.shipping $databases.analytics) (splitList "," $databases.order) -}}
{{- $accounts := dict -}}
{{- $grants := list -}}
{{- range $urls }}
{{- $dsn := trim . }}
{{- if hasPrefix "mysql" $dsn }}
{{- $url := urlParse $dsn }}
{{- $userinfo := splitn ":" 2 $url.userinfo }}
{{- $user := $userinfo._0 }}
{{- $password := default "" $userinfo._1 }}
{{- $database := trimPrefix "/" $url.path }}
{{- if or (not $user) (not $database) (contains "%" $url.userinfo) (contains "`" $database) (contains "/" $database) }}
{{- fail (printf "devDependencies: the URL of database %q needs an account, its name and password in plain URL characters (no percent-escapes), and a plain database name" $database) }}
{{- end }}
{{- if and (hasKey $accounts $user) (ne (get $accounts $user) $password) }}
{{- fail (printf "devDependencies: account %q has two passwords in dependencies.databases" $user) }}
{{- end }}
{{- $_ := set $accounts $user $password }}
{{- $grants = append $grants (list $database $user) }}
{{- end }}
{{- end -}}
-- Rendered by the chart from dependencies.databases; run by mariadbd --init-file.
{{- /* Quotes and backslashes cannot reach here: a URL's userinfo has them percent-escaped. */}}
{{- range $user, $password := $accounts }}
CREATE USER IF NOT EXISTS '{{ $user }}'@'%' IDENTIFIED BY '{{ $password }}';
ALTER USER '{{ $user }}'@'%' IDENTIFIED BY '{{ $password }}';
{{- end }}
{{- range $grants }}
{{- $database := index . 0 }}
{{- $user := index . 1 }}
CREATE DATABASE IF NOT EXISTS `{{ $database }}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
GRANT ALL PRIVILEGES ON `{{ $database }}`.* TO '{{ $user }}'@'%';
{{- end }}
{{- end -}}

{{/* The restricted pod-level context, as the contexts' Deployments have it. */}}
{{- define "ordermesh.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}
