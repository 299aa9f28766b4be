from django.core.management.base import BaseCommand, CommandError

from payments.services.runtime_role import RuntimeRoleError, runtime_grants_apply


class Command(BaseCommand):
    help = (
        "Grant an existing PostgreSQL role exactly what the running service needs (run as the tables' owner); "
        "the audit log gets SELECT and INSERT only, no table gets TRUNCATE."
    )

    def add_arguments(self, parser):
        parser.add_argument("role", help="An existing role, neither a superuser nor the tables' owner.")

    def handle(self, *args, **options):
        try:
            granted = runtime_grants_apply(options["role"])
        except RuntimeRoleError as error:
            raise CommandError(str(error)) from error
        if options["verbosity"] >= 2:
            for table, privileges in granted.items():
                self.stdout.write(f"{table}: {', '.join(privileges)}")
        self.stdout.write(f"Granted role {options['role']} the service's privileges on {len(granted)} tables.")
