from django.core.management.base import BaseCommand, CommandError

from billing.services.api_tokens import ApiTokenError, api_token_create


class Command(BaseCommand):
    help = "Create an API user if needed and print a new bearer token as the last line."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--tenant", help="The tenant this user acts for (required unless --staff).")
        parser.add_argument(
            "--staff",
            action="store_true",
            help="Staff act on every tenant, with the PAY-10 finance permissions; not combined with --tenant.",
        )

    def handle(self, *args, **options):
        try:
            user, token = api_token_create(
                username=options["username"], tenant_id=options["tenant"], staff=options["staff"]
            )
        except ApiTokenError as error:
            raise CommandError(str(error)) from error
        if options["verbosity"] >= 1:
            scope = "staff" if user.is_staff else f"tenant {user.tenant_member.tenant_id}"
            self.stdout.write(f"Token for {user.get_username()} ({scope}); it is shown once:")
        self.stdout.write(token)
