from mangum import Mangum
from starlette.applications import Starlette

api = Starlette()
handler = Mangum(api)
