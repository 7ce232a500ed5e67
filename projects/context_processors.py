from django.conf import settings


def pictor(request):
    return {"PICTOR_ALLOW_SIGNUP": settings.PICTOR_ALLOW_SIGNUP}
