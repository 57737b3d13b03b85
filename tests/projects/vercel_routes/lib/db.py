from .models import User


def get_user(path):
    return User(path.rsplit("/", 1)[-1])
