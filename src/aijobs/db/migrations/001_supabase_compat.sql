-- Supabase-compatible roles and auth.uid(), created only where missing, so the same
-- migrations run on plain PostgreSQL and on a Supabase project.
-- Roles are cluster-wide: several databases may migrate at once (tests do), so a
-- concurrent creation is tolerated rather than failing the migration.
do $$
declare
    r text;
begin
    foreach r in array array['anon', 'authenticated', 'service_role'] loop
        if not exists (select 1 from pg_roles where rolname = r) then
            begin
                execute format('create role %I nologin noinherit', r);
            exception when duplicate_object or unique_violation then
                null;
            end;
        end if;
    end loop;
    -- service_role is Supabase's server-side role: it bypasses RLS there. Only a superuser
    -- may grant BYPASSRLS; elsewhere the explicit service policies below stand in for it.
    if exists (select 1 from pg_roles where rolname = current_user and rolsuper) then
        alter role service_role bypassrls;
    end if;
    -- The API connects as the migrating role and switches to `authenticated` per request
    -- (SET LOCAL ROLE), which needs membership.
    if not pg_has_role(current_user, 'authenticated', 'MEMBER') then
        begin
            execute format('grant authenticated to %I', current_user);
        exception when insufficient_privilege then
            raise notice 'cannot grant authenticated to %; the API must connect as a member of it', current_user;
        end;
    end if;
    if not pg_has_role(current_user, 'anon', 'MEMBER') then
        begin
            execute format('grant anon to %I', current_user);
        exception when insufficient_privilege then
            null;
        end;
    end if;
end
$$;

create schema if not exists auth;

do $$
begin
    if not exists (
        select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'auth' and p.proname = 'uid'
    ) then
        -- Same definition as Supabase's: the JWT's `sub`, from either claim setting.
        create function auth.uid() returns uuid
        language sql stable
        as $f$
            select nullif(
                coalesce(
                    nullif(current_setting('request.jwt.claim.sub', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
                ),
                ''
            )::uuid
        $f$;
    end if;
end
$$;

do $$
begin
    grant usage on schema auth to anon, authenticated, service_role;
exception when insufficient_privilege then
    raise notice 'schema auth is not ours to grant on (Supabase manages it)';
end
$$;
