#!/bin/sh
# Create one database and one login role per gatehouse service, so identity and otp
# cannot read each other's tables. The postgres image runs this once, on an empty
# data volume (/docker-entrypoint-initdb.d); run it by hand against any other server.
#
# Reads IDENTITY_DB_PASSWORD and OTP_DB_PASSWORD. IDENTITY_DB_NAME and OTP_DB_NAME
# (default gatehouse_identity, gatehouse_otp) name both the database and its role.
# PGHOST, PGPORT, PGUSER and POSTGRES_USER choose the server and the superuser, as
# for psql.
set -eu

: "${IDENTITY_DB_PASSWORD:?IDENTITY_DB_PASSWORD is not set}"
: "${OTP_DB_PASSWORD:?OTP_DB_PASSWORD is not set}"
identity_db="${IDENTITY_DB_NAME:-gatehouse_identity}"
otp_db="${OTP_DB_NAME:-gatehouse_otp}"

# psql quotes the values itself (:'name' and :"name"), so a password or name never
# becomes SQL text.
psql --no-psqlrc --set ON_ERROR_STOP=1 \
    --username "${POSTGRES_USER:-${PGUSER:-postgres}}" --dbname postgres \
    --set identity_db="$identity_db" --set identity_password="$IDENTITY_DB_PASSWORD" \
    --set otp_db="$otp_db" --set otp_password="$OTP_DB_PASSWORD" <<'SQL'
CREATE ROLE :"identity_db" LOGIN PASSWORD :'identity_password';
CREATE DATABASE :"identity_db" OWNER :"identity_db";
REVOKE ALL ON DATABASE :"identity_db" FROM PUBLIC;

CREATE ROLE :"otp_db" LOGIN PASSWORD :'otp_password';
CREATE DATABASE :"otp_db" OWNER :"otp_db";
REVOKE ALL ON DATABASE :"otp_db" FROM PUBLIC;
SQL
